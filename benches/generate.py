#!/usr/bin/env python3
"""Greedy generation throughput: hsx vs transformers' model.generate, in one run, on this CPU.

Same random model (a flan-t5-base-sized one and the tiny profile's size), same batch of input ids, same
threads, KV cache on in both, exactly N new tokens per row (EOS suppressed until then in both).
The random models are written once to $HSX_CACHE/bench/ (never to the repository).

  make build && ~/.cache/hsx/venv/bin/python benches/generate.py [--sizes base,tiny] [--threads 2]
  On a GPU (scripts/gpu-check.sh): --device cuda --bf16 (both sides under bf16 autocast).
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("HSX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hsx")
SIZES = {
    # google/flan-t5-base's shape.
    "base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12),
    # configs/tiny.toml's shape.
    "tiny": dict(vocab_size=8000, d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4),
}


def model_dir(size):
    d = os.path.join(CACHE, "bench", f"t5-{size}")
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return d
    torch.manual_seed(0)
    cfg = T5Config(**SIZES[size], feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    m = T5ForConditionalGeneration(cfg)
    with torch.no_grad():
        m.lm_head.weight = torch.nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model) * cfg.d_model ** -0.5)
    m.config.tie_word_embeddings = False
    m.save_pretrained(d, safe_serialization=True)
    src = os.path.join(ROOT, "tests/fixtures/t5/model/tokenizer.json")
    with open(src) as f, open(os.path.join(d, "tokenizer.json"), "w") as g:
        g.write(f.read())
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; above 0, sampled on both sides")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--hsx", default=os.path.join(ROOT, "target/release/hsx"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hsx = a.hsx
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    results = []
    for size in a.sizes.split(","):
        d = model_dir(size)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(2, 100, (a.batch, a.input_len), generator=g)
        ids[:, -1] = 1
        ids_path = os.path.join(CACHE, "bench", f"ids-{size}.json")
        with open(ids_path, "w") as f:
            json.dump(ids.tolist(), f)
        model = T5ForConditionalGeneration.from_pretrained(d).eval().to(dev)
        ids = ids.to(dev)
        mask = torch.ones_like(ids)
        kw = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, num_beams=1,
                  use_cache=True, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
        if a.temperature > 0:
            kw.update(do_sample=True, temperature=a.temperature, top_p=a.top_p, top_k=0)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            model.generate(input_ids=ids, attention_mask=mask, **kw)
            times = []
            for _ in range(a.reps):
                sync()
                t = time.perf_counter()
                out = model.generate(input_ids=ids, attention_mask=mask, **kw)
                sync()
                times.append(time.perf_counter() - t)
        assert out.shape[1] == a.new_tokens + 1
        py = a.batch * a.new_tokens / statistics.median(times)
        r = subprocess.run([hsx, "bench", "generate", "--model", d, "--ids", ids_path, "--new-tokens", str(a.new_tokens),
                            "--threads", str(a.threads), "--reps", str(a.reps), "--device", a.device,
                            "--temperature", str(a.temperature), "--top-p", str(a.top_p)]
                           + (["--bf16"] if a.bf16 else []), capture_output=True, text=True, check=True)
        rs = json.loads(r.stdout)["tokens_per_s"]
        results.append((size, py, rs))
        print(f"{size}: transformers {py:.1f} tok/s, hsx {rs:.1f} tok/s, ratio hsx/transformers {rs / py:.2f}"
              f" (batch {a.batch}, input {a.input_len}, {a.new_tokens} new tokens, {a.threads} threads,"
              f" {a.device}{', bf16' if a.bf16 else ''}"
              f"{f', sampled T = {a.temperature}, top-p {a.top_p}' if a.temperature > 0 else ', greedy'})", flush=True)


if __name__ == "__main__":
    main()
