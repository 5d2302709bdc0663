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

With --outer none only the first row is run (for timing repetitions), and --generate tiny,base also times
`hsx bench generate` (greedy generation over a random T5 of the tiny profile's / flan-t5-base's shape,
written by benches/generate.py's helper; needs the bootstrap venv's Python) pinned vs native, alternating.
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


def bench_generate(hsx, base, sizes, reps):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    from generate import CACHE, model_dir

    for size in sizes:
        d = model_dir(size)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(2, 100, (8, 64), generator=g)
        ids[:, -1] = 1
        ids_path = os.path.join(CACHE, "bench", f"ids-{size}.json")
        with open(ids_path, "w") as f:
            json.dump(ids.tolist(), f)
        tps = {"native": [], "portable": []}
        for _ in range(reps):
            for mode in ("native", "portable"):
                env = dict(base, HSX_CPU_PINS=mode)
                r = subprocess.run([hsx, "bench", "generate", "--model", d, "--ids", ids_path, "--new-tokens", "16",
                                    "--threads", "2", "--reps", "2"], env=env, capture_output=True, text=True, check=True)
                tps[mode].append(json.loads(r.stdout)["tokens_per_s"])
        med = {m: sorted(v)[len(v) // 2] for m, v in tps.items()}
        print(f"hsx bench generate, {size}-sized random T5 (batch 8, 64 in, 16 new, 2 threads): "
              f"native {', '.join(f'{x:.1f}' for x in tps['native'])} tok/s; pinned {', '.join(f'{x:.1f}' for x in tps['portable'])} tok/s; "
              f"median pinned / native throughput = {med['portable'] / med['native']:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hsx", required=True)
    ap.add_argument("--mirror", default=os.environ.get("HSX_DATA_MIRROR"))
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "smoke.toml"))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--modes", default="native,portable")
    ap.add_argument("--outer", default="all", help="all, or none (only the row without outer settings)")
    ap.add_argument("--generate", default="", help="comma-separated sizes for `hsx bench generate` (tiny, base)")
    ap.add_argument("--skip-stage", action="store_true", help="skip the base-model stage rows")
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
        if a.generate:
            bench_generate(hsx, base, a.generate.split(","), a.reps)
        if a.skip_stage:
            return
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
        nat = [x[4] for x in rows if x[1] == "native" and x[2] == "none"]
        pin = [x[4] for x in rows if x[1] == "portable" and x[2] == "none"]
        if nat and pin:
            print(f"\npinning cost, smoke base-model stage (no outer settings): pinned / native wall time = "
                  f"{sum(pin) / len(pin):.2f} s / {sum(nat) / len(nat):.2f} s = {sum(pin) / sum(nat) * len(nat) / len(pin):.2f}")
    finally:
        shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
