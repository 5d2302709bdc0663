#!/usr/bin/env python3
"""MiniLM sentence embeddings: `hsx bench embed` against sentence-transformers, same sentences, same run.

Sentences are CosmosQA-like texts of mixed length, read at bench time from the data mirror's
cosmosqa/valid.csv (never copied into the repository): each row's context, question and reference
answer, the first --rows rows, duplicates dropped (about 1,000 texts for 400 rows, 3 to 160 tokens).

Fairness: both sides use --threads intra-op threads and --batch; the peer runs in a child process whose
environment holds the CPU pin variables exactly as hsx's own process had them (`hsx bench embed` reports
them: ATEN_CPU_CAPABILITY, MKL_CBWR, ... from src/runtime.rs PORTABLE_PINS), set before torch loads.
With --native both sides run unpinned (HSX_CPU_PINS=native, the peer's environment as given). hsx and
the peer alternate --reps times; each side's median time is reported, and the ratio hsx ÷ peer
(sentences/s). Parity: per sentence cosine and max-abs difference between hsx's and the peer's vectors.

  ~/.cache/hsx/venv/bin/pip install sentence-transformers   (without replacing torch; see RESULTS.md)
  make build && ~/.cache/hsx/venv/bin/python benches/embed.py [--rows 400] [--batch 64] [--reps 3]
"""
import argparse
import csv
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("HSX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hsx")


def sentences(mirror, rows):
    path = os.path.join(mirror, "cosmosqa", "valid.csv")
    out, seen = [], set()
    with open(path, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if i >= rows:
                break
            for t in (r["context"], r["question"], r["answer" + r["label"]]):
                if t not in seen:
                    seen.add(t)
                    out.append(t)
    return out


def read_f32(path, dim):
    with open(path, "rb") as f:
        b = f.read()
    v = struct.unpack(f"<{len(b) // 4}f", b)
    return [v[i:i + dim] for i in range(0, len(v), dim)]


def peer(a):
    """The child process: sentence-transformers, timed like hsx (one warm-up, then --reps)."""
    import torch
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer
    sents = json.load(open(a.data))
    st = SentenceTransformer(a.model, device="cpu")
    st.encode(sents[:32], batch_size=a.batch)
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        e = st.encode(sents, batch_size=a.batch, convert_to_numpy=True)
        times.append(time.perf_counter() - t)
    with open(a.out, "wb") as f:
        f.write(e.astype("<f4").tobytes())
    print(json.dumps({"impl": "sentence-transformers", "seconds_each": times, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


def compare(x, y):
    worst_cos, worst_abs = 1.0, 0.0
    for u, v in zip(x, y):
        dot = sum(p * q for p, q in zip(u, v))
        cos = dot / (math.sqrt(sum(p * p for p in u)) * math.sqrt(sum(q * q for q in v)))
        worst_cos = min(worst_cos, cos)
        worst_abs = max(worst_abs, max(abs(p - q) for p, q in zip(u, v)))
    return worst_cos, worst_abs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hsx", default=os.path.join(ROOT, "target/release/hsx"))
    ap.add_argument("--mirror", default=os.environ.get("HSX_DATA_MIRROR") or os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--model", default=os.environ.get("HSX_MINILM") or os.path.join(CACHE, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--native", action="store_true", help="both sides unpinned")
    ap.add_argument("--compare-hsx", help="another hsx binary (e.g. the previous build): its vectors against this one's")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer:
        return peer(a)

    sents = sentences(a.mirror, a.rows)
    bench = os.path.join(CACHE, "bench")
    os.makedirs(bench, exist_ok=True)
    data = os.path.join(bench, "embed_cosmosqa.json")
    with open(data, "w") as f:
        json.dump(sents, f)
    hsx_env = dict(os.environ, HSX_MINILM=a.model)
    if a.native:
        hsx_env["HSX_CPU_PINS"] = "native"
    hsx_vec, peer_vec = os.path.join(bench, "embed_hsx.f32"), os.path.join(bench, "embed_peer.f32")

    def run_hsx(binary, out):
        cmd = [binary, "bench", "embed", "--data", data, "--threads", str(a.threads), "--batch", str(a.batch), "--reps", "1", "--out", out]
        return json.loads(subprocess.run(cmd, env=hsx_env, capture_output=True, text=True, check=True).stdout)

    hsx_times, peer_times, pins = [], [], None
    for _ in range(a.reps):
        h = run_hsx(a.hsx, hsx_vec)
        hsx_times += h["seconds_each"]
        pins = h["pins"]
        peer_env = dict(os.environ)
        if not a.native:
            peer_env.update({k: v for k, v in pins.items() if v is not None})
        p = subprocess.run([sys.executable, __file__, "--peer", "--data", data, "--out", peer_vec, "--model", a.model,
                            "--batch", str(a.batch), "--threads", str(a.threads), "--reps", "1"],
                           env=peer_env, capture_output=True, text=True, check=True)
        p = json.loads(p.stdout.strip().splitlines()[-1])
        peer_times += p["seconds_each"]
    hs, ps = statistics.median(hsx_times), statistics.median(peer_times)
    n = len(sents)
    dim = h["hidden"]
    cos, mabs = compare(read_f32(hsx_vec, dim), read_f32(peer_vec, dim))
    mode = "unpinned (HSX_CPU_PINS=native)" if a.native else "both under hsx's CPU pins " + " ".join(f"{k}={v}" for k, v in pins.items())
    print(f"MiniLM embeddings, {n} CosmosQA texts ({a.rows} rows), batch {a.batch}, {a.threads} threads, {mode}")
    print(f"  hsx {n / hs:.1f} sentences/s (runs: {', '.join(f'{n / t:.1f}' for t in hsx_times)})")
    print(f"  sentence-transformers {n / ps:.1f} sentences/s (runs: {', '.join(f'{n / t:.1f}' for t in peer_times)}; torch {p['torch']})")
    print(f"  ratio hsx / sentence-transformers: {ps / hs:.2f}x")
    print(f"  parity hsx vs sentence-transformers: min cosine {cos:.8f}, max-abs {mabs:.2e}")
    if a.compare_hsx:
        old_vec = os.path.join(bench, "embed_hsx_other.f32")
        o = run_hsx(a.compare_hsx, old_vec)
        cos, mabs = compare(read_f32(hsx_vec, dim), read_f32(old_vec, dim))
        print(f"  parity hsx vs {a.compare_hsx} ({n / o['seconds']:.1f} sentences/s): min cosine {cos:.8f}, max-abs {mabs:.2e}")


if __name__ == "__main__":
    main()
