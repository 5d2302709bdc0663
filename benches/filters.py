#!/usr/bin/env python3
"""Synthetic-data filters at base scale: 100,000 candidates × 20,000 seed examples, hsx vs Python, one run.

Filters 1, 2, 4 and 5 (exact duplicate by hash; 8-gram overlap < 30% with any single seed example via an
inverted index; MinHash-LSH near duplicates among the seed and the accepted candidates — 3-word shingles,
128 permutations, 32 bands × 4 rows, Jaccard ≥ 0.5 — ; 10-200 words). The Python peer is what a user
would write: datasketch's MinHash + MinHashLSH with the same parameters and a plain 8-gram index.
Texts are synthetic (made-up words), with 5% exact and 10% near copies of seed examples.
Also reports MiniLM embedding throughput (hsx vs sentence-transformers) on this CPU.

  ~/.cache/hsx/venv/bin/pip install datasketch sentence-transformers
  make build && ~/.cache/hsx/venv/bin/python benches/filters.py [--seeds 20000] [--candidates 100000]
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("HSX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hsx")


def corpus(n_seed, n_cand):
    rng = random.Random(11)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    text = lambda n: " ".join(rng.choice(vocab) for _ in range(n))
    seeds = [text(rng.randint(40, 120)) for _ in range(n_seed)]
    cands = []
    for i in range(n_cand):
        r = rng.random()
        if r < 0.05:
            cands.append(rng.choice(seeds))
        elif r < 0.15:
            w = rng.choice(seeds).split()
            for _ in range(max(1, len(w) // 20)):
                w[rng.randrange(len(w))] = rng.choice(vocab)
            cands.append(" ".join(w))
        else:
            cands.append(text(rng.randint(5, 220)))
    return seeds, cands


def python_filters(seeds, cands):
    from datasketch import MinHash, MinHashLSH

    def words(t):
        return t.lower().split()

    def grams(ws, n):
        return {" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)}

    def minhash(ws):
        m = MinHash(num_perm=128, seed=42)
        sh = grams(ws, 3) or {" ".join(ws)}
        m.update_batch([s.encode() for s in sh])
        return m, sh

    t = time.perf_counter()
    seen = {hashlib.sha256(" ".join(words(s)).encode()).digest() for s in seeds}
    index = {}
    lsh = MinHashLSH(num_perm=128, params=(32, 4))
    shingles = {}
    for i, s in enumerate(seeds):
        ws = words(s)
        for g in grams(ws, 8):
            index.setdefault(g, []).append(i)
        m, sh = minhash(ws)
        lsh.insert(f"s{i}", m)
        shingles[f"s{i}"] = sh
    accepted = 0
    for j, c in enumerate(cands):
        ws = words(c)
        h = hashlib.sha256(" ".join(ws).encode()).digest()
        if h in seen:
            continue
        seen.add(h)
        g = grams(ws, 8)
        counts = {}
        for x in g:
            for i in index.get(x, ()):
                counts[i] = counts.get(i, 0) + 1
        if g and counts and max(counts.values()) / len(g) >= 0.30:
            continue
        m, sh = minhash(ws)
        near = any(len(sh & shingles[k]) / len(sh | shingles[k]) >= 0.5 for k in lsh.query(m))
        if near:
            continue
        if not 10 <= len(ws) <= 200:
            continue
        lsh.insert(f"c{j}", m)
        shingles[f"c{j}"] = sh
        accepted += 1
    return time.perf_counter() - t, accepted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20000)
    ap.add_argument("--candidates", type=int, default=100000)
    ap.add_argument("--embed", type=int, default=1000)
    a = ap.parse_args()
    seeds, cands = corpus(a.seeds, a.candidates)
    os.makedirs(os.path.join(CACHE, "bench"), exist_ok=True)
    path = os.path.join(CACHE, "bench", "filters.json")
    with open(path, "w") as f:
        json.dump({"seeds": seeds, "candidates": cands}, f)
    hsx = os.path.join(ROOT, "target/release/hsx")
    h = json.loads(subprocess.run([hsx, "bench", "filters", "--data", path], capture_output=True, text=True, check=True).stdout)
    py_secs, py_acc = python_filters(seeds, cands)
    print(f"filters 1,2,4,5: {a.candidates} candidates x {a.seeds} seeds: hsx {h['seconds']:.1f} s "
          f"(index {h['index_seconds']:.1f} s, accepted {h['accepted']}), python/datasketch {py_secs:.1f} s (accepted {py_acc}); "
          f"ratio {py_secs / h['seconds']:.1f}x", flush=True)
    # MiniLM throughput on CosmosQA-like sentence lengths.
    rng = random.Random(5)
    sents = [" ".join(rng.choice(seeds).split()[: rng.randint(20, 90)]) for _ in range(a.embed)]
    epath = os.path.join(CACHE, "bench", "embed.json")
    with open(epath, "w") as f:
        json.dump(sents, f)
    e = json.loads(subprocess.run([hsx, "bench", "embed", "--data", epath], capture_output=True, text=True, check=True).stdout)
    from sentence_transformers import SentenceTransformer
    import torch
    torch.set_num_threads(2)
    st = SentenceTransformer(os.path.join(CACHE, "models", "all-MiniLM-L6-v2"), device="cpu")
    st.encode(sents[:32], batch_size=64)
    t = time.perf_counter()
    st.encode(sents, batch_size=64)
    ps = len(sents) / (time.perf_counter() - t)
    print(f"MiniLM embeddings: hsx {e['sentences_per_s']:.0f} sentences/s, sentence-transformers {ps:.0f} sentences/s "
          f"(ratio {e['sentences_per_s'] / ps:.2f}; 2 threads, batch 64, 20-90 words)", flush=True)


if __name__ == "__main__":
    main()
