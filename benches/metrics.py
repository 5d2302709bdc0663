#!/usr/bin/env python3
"""EM + F1 + ROUGE-1/2/L (stemmed) over 2,000 pairs: hsx vs rouge-score + the SQuAD v1.1 logic, one run.

The pairs are the committed fixture's (tests/fixtures/metrics/pairs.json) cycled to 2,000; both sides
compute the same five numbers per pair and report a checksum (sum of F1 + ROUGE-L) that must agree.

  make build && ~/.cache/hsx/venv/bin/python benches/metrics.py
"""
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests/fixtures/metrics"))
from make_metrics_fixture import squad_em, squad_f1  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    base = json.load(open(os.path.join(ROOT, "tests/fixtures/metrics/pairs.json")))["pairs"]
    pairs = [(base[i % len(base)]["pred"], base[i % len(base)]["ref"]) for i in range(n)]
    path = os.path.join("/tmp" if os.path.isdir("/tmp") else ".", "hsx-bench-pairs.json")
    with open(path, "w") as f:
        json.dump(pairs, f)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        checksum = 0.0
        for p, r in pairs:
            squad_em(p, r)
            f1 = squad_f1(p, r)
            s = scorer.score(r, p)
            checksum += f1 + s["rougeL"].fmeasure
        times.append(time.perf_counter() - t)
    py = statistics.median(times)
    out = subprocess.run([os.path.join(ROOT, "target/release/hsx"), "bench", "metrics", "--pairs", path],
                         capture_output=True, text=True, check=True)
    h = json.loads(out.stdout)
    assert abs(h["checksum"] - checksum) < 1e-6, (h["checksum"], checksum)
    print(f"{n} pairs: python {py * 1000:.1f} ms, hsx {h['seconds_median'] * 1000:.2f} ms, "
          f"ratio {py / h['seconds_median']:.1f}x (checksums agree: {checksum:.6f})")


if __name__ == "__main__":
    main()
