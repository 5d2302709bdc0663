#!/usr/bin/env python3
"""CPU pins: which outer settings move the bits, and what the portable pins cost.

Runs the smoke profile's base-model stage (a small T5 pretrained from scratch) once per outer setting,
in one throw-away workspace, and prints a table of the stage's model.safetensors sha256 and its wall time
(from the ledger entry's started/finished). Rows come in two groups:

  * HSX_CPU_PINS=native: no pins, the outer setting reaches libtorch (what moves the bits).
  * portable (the default): the same outer settings, which the pins must override (same hash every row).

The time ratio pinned / native is the pinning cost. Timings on a shared machine are noisy: compare rows of
one run only, and repeat (--reps) to see the spread.

    python3 benches/cpu_pins.py --hsx target/release/hsx --mirror $HSX_DATA_MIRROR [--reps 2]

With --outer none only the first row is run (for timing repetitions); --generate also times `hsx bench
generate` over the stage's model pinned vs native, alternating; --matmul-python PY times a flan-t5-base-shaped
feed-forward in libtorch alone (PY: the bootstrap venv's Python, same wheel) with and without the pins.
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

OUTER = [
    ("none", {}),
    ("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}),
    ("ATEN_CPU_CAPABILITY=avx2", {"ATEN_CPU_CAPABILITY": "avx2"}),
    ("ATEN_CPU_CAPABILITY=avx512", {"ATEN_CPU_CAPABILITY": "avx512"}),
    ("MKL_CBWR=AUTO", {"MKL_CBWR": "AUTO"}),
    ("MKL_CBWR=AVX2,STRICT", {"MKL_CBWR": "AVX2,STRICT"}),
    ("MKL_CBWR=COMPATIBLE", {"MKL_CBWR": "COMPATIBLE"}),
    ("MKL_CBWR=COMPATIBLE,STRICT", {"MKL_CBWR": "COMPATIBLE,STRICT"}),
    ("ONEDNN_MAX_CPU_ISA=SSE41", {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    ("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
    (
        "the pins by hand (ATen avx2, MKL COMPATIBLE,STRICT, oneDNN AVX2)",
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    ),
]


def stamp(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def run_stage(hsx, ws, ledger, env, only):
    subprocess.run(
        [hsx, "-q", "run", "--config", "smoke.toml", "--ledger", ledger, "--only", only],
        cwd=ws, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    entry = json.load(open(os.path.join(ws, ledger)))["entries"][-1]
    out = next(o for o in entry["outputs"] if o["path"].endswith("model.safetensors")) if only == "base-model" else None
    secs = (stamp(entry["finished"]) - stamp(entry["started"])).total_seconds()
    return entry, out, secs


# The pins as hsx sets them (src/runtime.rs PORTABLE_PINS), for the libtorch-only matmul timing.
PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "MKL_DYNAMIC": "FALSE",
        "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT", "OMP_DYNAMIC": "FALSE"}

MATMUL = """
import time, torch
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
x = torch.randn(8 * 64, 768, generator=g)
w1 = torch.randn(768, 2048, generator=g)
w2 = torch.randn(2048, 768, generator=g)
(x @ w1).relu() @ w2
ts = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(10):
        (x @ w1).relu() @ w2
    ts.append(time.perf_counter() - t)
print(sorted(ts)[2] / 10)
"""


def bench_generate(hsx, base, model, reps):
    """`hsx bench generate` over the stage's own small T5, pinned vs native, alternating."""
    ids = [[(7 * r + 3 * c) % 900 + 5 for c in range(63)] + [1] for r in range(8)]
    ids_path = os.path.join(os.path.dirname(model), "bench-ids.json")
    with open(ids_path, "w") as f:
        json.dump(ids, f)
    tps = {"native": [], "portable": []}
    for _ in range(reps):
        for mode in ("native", "portable"):
            r = subprocess.run([hsx, "bench", "generate", "--model", model, "--ids", ids_path, "--new-tokens", "16",
                                "--threads", "2", "--reps", "3"], env=dict(base, HSX_CPU_PINS=mode), capture_output=True, text=True, check=True)
            tps[mode].append(json.loads(r.stdout)["tokens_per_s"])
    med = {m: sorted(v)[len(v) // 2] for m, v in tps.items()}
    print(f"hsx bench generate, the smoke base model (batch 8, 64 in, 16 new, 2 threads): "
          f"native {', '.join(f'{x:.0f}' for x in tps['native'])} tok/s; pinned {', '.join(f'{x:.0f}' for x in tps['portable'])} tok/s; "
          f"median pinned / native throughput = {med['portable'] / med['native']:.2f}", flush=True)


def bench_matmul(python, base, reps):
    """libtorch alone: a flan-t5-base-shaped feed-forward (512x768 @ 768x2048, relu, @ 2048x768), pinned vs not."""
    secs = {"native": [], "portable": []}
    for _ in range(reps):
        for mode in ("native", "portable"):
            env = dict(base) if mode == "native" else dict(base, **PINS)
            r = subprocess.run([python, "-c", MATMUL], env=env, capture_output=True, text=True, check=True)
            secs[mode].append(float(r.stdout.split()[-1]))
    med = {m: sorted(v)[len(v) // 2] for m, v in secs.items()}
    print(f"libtorch feed-forward at flan-t5-base shape (2 threads): native {', '.join(f'{x * 1e3:.1f}' for x in secs['native'])} ms; "
          f"pinned {', '.join(f'{x * 1e3:.1f}' for x in secs['portable'])} ms; median pinned / native time = {med['portable'] / med['native']:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hsx", required=True)
    ap.add_argument("--mirror", default=os.environ.get("HSX_DATA_MIRROR"))
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "smoke.toml"))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--modes", default="native,portable")
    ap.add_argument("--outer", default="all", help="all, or none (only the row without outer settings)")
    ap.add_argument("--generate", action="store_true", help="also time `hsx bench generate` over the stage's model")
    ap.add_argument("--matmul-python", default="", help="a Python with the same torch wheel: also time a base-shaped feed-forward")
    a = ap.parse_args()
    global OUTER
    if a.outer == "none":
        OUTER = OUTER[:1]
    if not a.mirror:
        sys.exit("set HSX_DATA_MIRROR (or --mirror) to the directory holding cosmosqa/valid.csv")
    hsx = os.path.abspath(a.hsx)
    ws = tempfile.mkdtemp(prefix="hsx-cpu-pins-")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "MKL_", "ONEDNN_", "DNNL_", "OMP_", "HSX_CPU_PINS"))}
    base["HSX_DATA_MIRROR"] = os.path.abspath(a.mirror)
    base["HSX_SIGNING_KEY"] = os.path.join(ws, "k.pem")
    try:
        if a.matmul_python:
            bench_matmul(a.matmul_python, base, a.reps)
        shutil.copy(a.config, os.path.join(ws, "smoke.toml"))
        subprocess.run([hsx, "-q", "keygen", "--if-missing"], env=base, check=True, stdout=subprocess.DEVNULL)
        run_stage(hsx, ws, "ledger.json", base, "prepare")
        rows = []
        for rep in range(a.reps):
            for mode in a.modes.split(","):
                for name, extra in OUTER:
                    env = dict(base, **extra)
                    if mode == "native":
                        env["HSX_CPU_PINS"] = "native"
                    entry, out, secs = run_stage(hsx, ws, "ledger.json", env, "base-model")
                    pins = entry["env"]["torch"].get("cpu_pins") or {}
                    rows.append((rep, mode, name, out["sha256"][:12], secs, entry["env"]["torch"]["cpu_capability"], pins.get("mkl_cbwr")))
                    print(f"rep {rep}  {mode:<8}  {name:<66}  sha256 {out['sha256'][:12]}  {secs:6.2f} s  ATen {rows[-1][5]:<7} MKL {rows[-1][6]}", flush=True)
        print()
        print("| run mode | outer setting | base-model sha256 | ATen capability in effect | MKL CNR in effect | stage seconds (each rep) |")
        print("|---|---|---|---|---|---|")
        for mode in a.modes.split(","):
            for name, _ in OUTER:
                r = [x for x in rows if x[1] == mode and x[2] == name]
                hashes = sorted({x[3] for x in r})
                print(f"| {mode} | {name} | {', '.join(hashes)} | {r[0][5]} | {r[0][6]} | {', '.join(f'{x[4]:.2f}' for x in r)} |")
        if a.generate:
            model = os.path.join(ws, "runs", "smoke", "base-model", "model")
            bench_generate(hsx, base, model, a.reps)
        nat = [x[4] for x in rows if x[1] == "native" and x[2] == "none"]
        pin = [x[4] for x in rows if x[1] == "portable" and x[2] == "none"]
        if nat and pin:
            print(f"\npinning cost, smoke base-model stage (no outer settings): pinned / native wall time = "
                  f"{sum(pin) / len(pin):.2f} s / {sum(nat) / len(nat):.2f} s = {sum(pin) / sum(nat) * len(nat) / len(pin):.2f}")
    finally:
        shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
