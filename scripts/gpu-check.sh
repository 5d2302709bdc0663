#!/usr/bin/env bash
# scripts/gpu-check.sh: everything hsx checks on a machine with a CUDA GPU, in one run, ending in a
# markdown table for benches/RESULTS.md (docs/base-profile.md says what each row means).
#
#   scripts/gpu-check.sh [--dry-run] [--out DIR] [--steps LIST] [--prebuilt DIR] [--minilm DIR]
#
#   --dry-run       check the arguments, print the plan and the table with every cell "not run"; needs
#                   no GPU (the test suite runs this so the script does not rot)
#   --out DIR       logs, the rehearsal's run and results.md (default: runs/local/gpu-check)
#   --steps LIST    comma-separated subset of:
#                   facts,build,parity,bf16,rehearsal,determinism,generation,throughput
#                   (default: all; they run in that order)
#   --prebuilt DIR  binaries built on another machine (hsx and the test executables t5_parity, lora,
#                   bf16) instead of `cargo build` here; the build step then only checks they run
#   --minilm DIR    the BERT model for BERTScore and the semantic filter (default: $HSX_MINILM or the
#                   bootstrap's all-MiniLM-L6-v2)
#
# Steps:
#   facts        the GPU, driver, libtorch and CPU
#   build        cargo build --release and the test executables (or the prebuilt ones)
#   parity       the T5 and LoRA parity tests (tests/t5_parity.rs, tests/lora.rs) on CUDA
#   bf16         tests/bf16.rs on CUDA: bf16 autocast vs fp32 for a LoRA step and greedy generation
#   rehearsal    configs/base-rehearsal.toml on CUDA (bf16), its ledger verified, time and tokens per stage,
#                and the GPU facts every entry records (env.torch.cuda: GPU, driver, CUDA runtime, cuDNN,
#                cuBLAS, CUDA settings)
#   determinism  two identical bf16 LoRA trainings (`hsx train --device cuda`, deterministic algorithms
#                on) on the rehearsal's flan-t5-base-shaped model, adapters compared bit for bit
#   generation   on the same model, two identical greedy and two identical sampled (T = 0.7, seeded)
#                generations (`hsx generate --device cuda --bf16`: 64 answer prompts, 64 new tokens, as the
#                pipeline's batches), token ids compared bit for bit
#   throughput   benches/generate.py (greedy, and sampled at T = 0.7, top-p 0.9) and benches/train_lora.py at
#                flan-t5-base's size on CUDA in bf16,
#                hsx against transformers (+ peft) on the same GPU in the same run
set -uo pipefail

ALL_STEPS="facts,build,parity,bf16,rehearsal,determinism,generation,throughput"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="runs/local/gpu-check"
STEPS="$ALL_STEPS"
PREBUILT=""
MINILM="${HSX_MINILM:-}"
DRY=0

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die_usage() { echo "gpu-check.sh: $1" >&2; echo "run scripts/gpu-check.sh --help for the options" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1; shift ;;
        --out) [[ $# -ge 2 && -n "$2" ]] || die_usage "--out needs a directory"; OUT="$2"; shift 2 ;;
        --steps) [[ $# -ge 2 && -n "$2" ]] || die_usage "--steps needs a list"; STEPS="$2"; shift 2 ;;
        --prebuilt) [[ $# -ge 2 && -n "$2" ]] || die_usage "--prebuilt needs a directory"; PREBUILT="$2"; shift 2 ;;
        --minilm) [[ $# -ge 2 && -n "$2" ]] || die_usage "--minilm needs a directory"; MINILM="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument '$1'" ;;
    esac
done
IFS=',' read -r -a WANT <<<"$STEPS"
for s in "${WANT[@]}"; do
    [[ ",$ALL_STEPS," == *",$s,"* ]] || die_usage "unknown step '$s' in --steps (steps: $ALL_STEPS)"
done
want() { [[ ",$STEPS," == *",$1,"* ]]; }

# The table: one row per check, filled as the steps run.
declare -A RESULT DETAIL
ROWS=(gpu build t5 lora bf16 determinism gen_greedy gen_sampled generate generate_sampled train rehearsal cuda_facts)
declare -A LABEL=(
    [gpu]="GPU, driver, libtorch"
    [build]="build"
    [t5]="T5 parity with transformers on CUDA (tests/t5_parity.rs)"
    [lora]="LoRA parity with peft on CUDA (tests/lora.rs)"
    [bf16]="bf16 autocast vs fp32 on CUDA (tests/bf16.rs)"
    [determinism]="two identical bf16 LoRA trainings, bit for bit"
    [gen_greedy]="two identical greedy generations, flan-t5-base shape, bf16, bit for bit"
    [gen_sampled]="two identical sampled generations (T = 0.7, seeded), flan-t5-base shape, bf16, bit for bit"
    [generate]="greedy generation, flan-t5-base shape, bf16: hsx / transformers"
    [generate_sampled]="sampled generation (T = 0.7, top-p 0.9), flan-t5-base shape, bf16: hsx / transformers"
    [train]="LoRA training, flan-t5-base shape, bf16: hsx / transformers+peft"
    [rehearsal]="base-profile rehearsal on CUDA (configs/base-rehearsal.toml)"
    [cuda_facts]="GPU facts in every CUDA entry of the rehearsal (env.torch.cuda)"
)
for r in "${ROWS[@]}"; do RESULT[$r]="not run"; DETAIL[$r]=""; done

table() {
    echo "| check | result | detail |"
    echo "| --- | --- | --- |"
    for r in "${ROWS[@]}"; do echo "| ${LABEL[$r]} | ${RESULT[$r]} | ${DETAIL[$r]} |"; done
}

if [[ $DRY -eq 1 ]]; then
    echo "gpu-check.sh (dry run): steps ${STEPS}; out ${OUT}; binaries ${PREBUILT:-built here with cargo}; MiniLM ${MINILM:-from the bootstrap}"
    IFS=',' read -r -a ORDER <<<"$ALL_STEPS"
    for s in "${ORDER[@]}"; do want "$s" && echo "  would run: $s"; done
    echo
    table
    exit 0
fi

cd "$ROOT" || exit 2
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/log"
: >"$LOG"
say() { echo "[gpu-check] $*" | tee -a "$LOG" >&2; }
PY="${PYTHON:-python3}"
[[ -n "$MINILM" ]] && export HSX_MINILM="$MINILM"
export HSX_TEST_DEVICE=cuda HSX_TEST_REPO="$ROOT" TOKENIZERS_PARALLELISM=false

if [[ -n "$PREBUILT" ]]; then
    BIN="$(cd "$PREBUILT" && pwd)"
    HSX="$BIN/hsx"
else
    BIN=""
    HSX="$ROOT/target/release/hsx"
fi
export HSX_TEST_BIN="$HSX"

if want facts; then
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>>"$LOG" | head -1)
    torch=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>>"$LOG")
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    RESULT[gpu]="${gpu:-no GPU found}"
    DETAIL[gpu]="python torch ${torch:-?}; CPU ${cpu:-?}, $(nproc) cores"
    say "GPU: ${RESULT[gpu]}; ${DETAIL[gpu]}"
fi

# Test executables: prebuilt, or the ones cargo builds (their paths from cargo's JSON messages).
declare -A TESTBIN
if want build; then
    if [[ -n "$PREBUILT" ]]; then
        ok=1
        for t in hsx t5_parity lora bf16; do [[ -x "$BIN/$t" ]] || { ok=0; say "missing prebuilt $BIN/$t"; }; done
        if [[ $ok -eq 1 ]] && "$HSX" --version >>"$LOG" 2>&1; then RESULT[build]="prebuilt"; else RESULT[build]="FAILED"; fi
        DETAIL[build]="binaries from $PREBUILT"
    else
        t0=$SECONDS
        if cargo build --release --locked >>"$LOG" 2>&1 &&
            cargo test --release --locked --no-run --test t5_parity --test lora --test bf16 --message-format=json 2>>"$LOG" >"$OUT/build.json"; then
            RESULT[build]="ok"
        else
            RESULT[build]="FAILED"
        fi
        DETAIL[build]="cargo build --release, $((SECONDS - t0)) s"
    fi
fi
for t in t5_parity lora bf16; do
    if [[ -n "$PREBUILT" ]]; then
        TESTBIN[$t]="$BIN/$t"
    elif [[ -s "$OUT/build.json" ]]; then
        TESTBIN[$t]=$("$PY" -c "
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get('reason') == 'compiler-artifact' and m['target']['name'] == sys.argv[2] and m.get('executable'):
        print(m['executable'])" "$OUT/build.json" "$t" | tail -1)
    fi
done

# Runs one test executable on CUDA; sets RESULT/DETAIL[$2] from its summary line.
run_tests() {
    local exe="${TESTBIN[$1]:-}" row="$2" f="$OUT/test-$1.log"
    if [[ -z "$exe" || ! -x "$exe" ]]; then RESULT[$row]="not built"; return; fi
    "$exe" --test-threads=1 --nocapture >"$f" 2>&1
    local rc=$? summary
    summary=$(grep -m1 '^test result:' "$f" | sed 's/^test result: //; s/; finished.*//')
    if [[ $rc -eq 0 ]]; then RESULT[$row]="pass"; else RESULT[$row]="FAIL"; fi
    DETAIL[$row]="${summary:-no summary (see $f)}"
}
if want parity; then
    run_tests t5_parity t5
    d=$(grep -h -o 'max-abs diff vs transformers: [0-9.e+-]*' "$OUT/test-t5_parity.log" 2>/dev/null | sed 's/.*: //' | sort -g | tail -1)
    [[ -n "$d" ]] && DETAIL[t5]="${DETAIL[t5]}; largest hidden/logit diff ${d}"
    run_tests lora lora
    d=$(grep -h -o 'final adapter max-abs diff vs peft: [0-9.e+-]*' "$OUT/test-lora.log" 2>/dev/null | sed 's/.*: //')
    [[ -n "$d" ]] && DETAIL[lora]="${DETAIL[lora]}; final adapter diff ${d}"
    say "parity: t5 ${RESULT[t5]}, lora ${RESULT[lora]}"
fi
if want bf16; then
    run_tests bf16 bf16
    d=$(grep -h -E '^(loss fp32|LoRA gradients|first-step logits)' "$OUT/test-bf16.log" 2>/dev/null | tr '\n' ';' | sed 's/;$//; s/|/\//g')
    [[ -n "$d" ]] && DETAIL[bf16]="${DETAIL[bf16]}; ${d}"
    say "bf16: ${RESULT[bf16]}"
fi

# Per-stage time, token positions and training precision from a ledger's entries (metrics.resources).
stage_summary() {
    "$PY" -c '
import json, sys
try:
    entries = json.load(open(sys.argv[1]))["entries"]
except Exception as e:
    print("no ledger: %s" % e)
    sys.exit()
parts = []
for e in entries:
    m = e.get("metrics") or {}
    r = m.get("resources") or {}
    toks = sum(v for v in (r.get("tokens") or {}).values() if isinstance(v, int))
    prec = m.get("compute_precision") if isinstance(m.get("compute_precision"), str) else None
    parts.append("%s %.1f s, %d tok%s" % (e["stage"], r.get("wall_seconds") or 0, toks, ", " + prec if prec else ""))
print("; ".join(parts))
' "$1" 2>>"$LOG"
}

REH="$OUT/rehearsal"
if want rehearsal; then
    rm -rf "$REH" "$OUT/base-rehearsal-cuda.toml"
    sed -e 's/^device = "cpu"/device = "cuda"/' configs/base-rehearsal.toml >"$OUT/base-rehearsal-cuda.toml"
    "$HSX" -q keygen --if-missing >>"$LOG" 2>&1
    t0=$SECONDS
    if "$HSX" run --config "$OUT/base-rehearsal-cuda.toml" --out "$REH" >>"$LOG" 2>&1 &&
        "$HSX" verify --ledger "$REH/ledger.json" --require-artifacts ${HSX_DATA_MIRROR:+--data-mirror "$HSX_DATA_MIRROR"} >>"$LOG" 2>&1; then
        RESULT[rehearsal]="ok, verified"
    else
        RESULT[rehearsal]="FAILED (see $LOG)"
    fi
    DETAIL[rehearsal]="$((SECONDS - t0)) s end to end; $(stage_summary "$REH/ledger.json")"
    if facts=$("$PY" - "$REH/ledger.json" 2>>"$LOG" <<'EOF'
import json, sys
entries = json.load(open(sys.argv[1]))["entries"]
missing = [e["stage"] for e in entries if not (e["env"]["torch"].get("cuda") or {}).get("gpus")]
if missing:
    sys.exit("no GPU facts in: " + ", ".join(missing))
c = entries[-1]["env"]["torch"]["cuda"]
g = c["gpus"][0]
unknown = [k for k in ("driver", "cuda_runtime", "cudnn", "cublas") if not c.get(k)]
print("%d entries; %s, compute capability %s, %d MiB; driver %s, CUDA runtime %s, cuDNN %s, cuBLAS %s; %s%s" % (
    len(entries), g["name"], g["compute_capability"], g["total_memory_bytes"] >> 20, c["driver"], c["cuda_runtime"],
    c["cudnn"], c["cublas"], ", ".join("%s %s" % kv for kv in sorted(c["determinism"].items())),
    "; UNKNOWN: " + ", ".join(unknown) if unknown else ""))
EOF
    ); then
        if [[ "$facts" == *UNKNOWN* ]]; then RESULT[cuda_facts]="INCOMPLETE"; else RESULT[cuda_facts]="recorded"; fi
        DETAIL[cuda_facts]="$facts"
    else
        RESULT[cuda_facts]="FAILED (see $LOG)"
    fi
    say "rehearsal: ${RESULT[rehearsal]}"
fi

if want determinism; then
    model="$REH/base-model/model"
    if [[ ! -f "$model/model.safetensors" ]]; then
        RESULT[determinism]="needs the rehearsal's base model (run the rehearsal step)"
    else
        "$PY" - "$OUT/pairs.jsonl" <<'EOF'
import json, random, sys
rng = random.Random(11)
words = "the a river town she he went saw because after before early late friend house road light".split()
with open(sys.argv[1], "w") as f:
    for i in range(64):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(40, 120)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(3, 16)))
        f.write(json.dumps({"input": q, "target": a}) + "\n")
EOF
        ok=1
        for k in 1 2; do
            rm -rf "$OUT/det-$k"
            "$HSX" train --model "$model" --train "$OUT/pairs.jsonl" --out "$OUT/det-$k" --device cuda --epochs 1 --seed 5 >>"$LOG" 2>&1 || ok=0
        done
        if [[ $ok -eq 1 ]]; then
            a=$(sha256sum "$OUT/det-1/adapter_model.safetensors" | cut -c1-16)
            b=$(sha256sum "$OUT/det-2/adapter_model.safetensors" | cut -c1-16)
            if [[ "$a" == "$b" ]]; then RESULT[determinism]="identical"; else RESULT[determinism]="DIFFER"; fi
            DETAIL[determinism]="64 pairs, 1 epoch, bf16, deterministic algorithms; adapter sha256 $a / $b"
        else
            RESULT[determinism]="FAILED (see $LOG)"
        fi
    fi
    say "determinism: ${RESULT[determinism]}"
fi

# Two runs of one generation must give the same token ids, bit for bit: greedy, and sampled at the
# synthesis temperature with a fixed seed (hsx generate runs with deterministic algorithms on, as the
# pipeline's stages do).
if want generation; then
    model="$REH/base-model/model"
    if [[ ! -f "$model/model.safetensors" ]]; then
        RESULT[gen_greedy]="needs the rehearsal's base model (run the rehearsal step)"
        RESULT[gen_sampled]="${RESULT[gen_greedy]}"
    else
        "$PY" - "$OUT/prompts.jsonl" <<'EOF'
import json, random, sys
rng = random.Random(29)
words = "the a river town she he went saw because after before early late friend house road light".split()
with open(sys.argv[1], "w") as f:
    for i in range(64):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(60, 300)))
        question = "what happened " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + " ?"
        prompt = f"Answer the question given the context.\n\nContext: {context}\n\nQuestion: {question}"
        f.write(json.dumps({"input": prompt}) + "\n")
EOF
        for mode in greedy sampled; do
            if [[ $mode == greedy ]]; then args=(--temperature 0); else args=(--temperature 0.7 --seed 7); fi
            ok=1
            for k in 1 2; do
                "$HSX" --json generate --model "$model" --input "$OUT/prompts.jsonl" --device cuda --bf16 \
                    --max-new-tokens 64 "${args[@]}" >"$OUT/gen-$mode-$k.jsonl" 2>>"$LOG" || ok=0
            done
            row="gen_$mode"
            if [[ $ok -eq 1 && -s "$OUT/gen-$mode-1.jsonl" ]]; then
                a=$(sha256sum "$OUT/gen-$mode-1.jsonl" | cut -c1-16)
                b=$(sha256sum "$OUT/gen-$mode-2.jsonl" | cut -c1-16)
                if [[ "$a" == "$b" ]]; then RESULT[$row]="identical"; else RESULT[$row]="DIFFER"; fi
                DETAIL[$row]="64 prompts, 64 new tokens, bf16, deterministic algorithms; ids and text sha256 $a / $b"
            else
                RESULT[$row]="FAILED (see $LOG)"
            fi
        done
    fi
    say "generation: greedy ${RESULT[gen_greedy]}, sampled ${RESULT[gen_sampled]}"
fi

if want throughput; then
    export HSX_CACHE="${HSX_CACHE:-$OUT/cache}"
    if g=$("$PY" benches/generate.py --sizes base --device cuda --bf16 --batch 64 --input-len 256 --new-tokens 64 --hsx "$HSX" 2>>"$LOG"); then
        echo "$g" >>"$LOG"
        RESULT[generate]=$(echo "$g" | grep -o 'ratio hsx/transformers [0-9.]*' | sed 's/ratio hsx\/transformers /**/; s/$/×**/')
        DETAIL[generate]=$(echo "$g" | sed 's/^base: //; s/, ratio.*(/ (/')
    else
        RESULT[generate]="FAILED (see $LOG)"
    fi
    if g=$("$PY" benches/generate.py --sizes base --device cuda --bf16 --batch 64 --input-len 256 --new-tokens 64 \
        --temperature 0.7 --top-p 0.9 --hsx "$HSX" 2>>"$LOG"); then
        echo "$g" >>"$LOG"
        RESULT[generate_sampled]=$(echo "$g" | grep -o 'ratio hsx/transformers [0-9.]*' | sed 's/ratio hsx\/transformers /**/; s/$/×**/')
        DETAIL[generate_sampled]=$(echo "$g" | sed 's/^base: //; s/, ratio.*(/ (/')
    else
        RESULT[generate_sampled]="FAILED (see $LOG)"
    fi
    if t=$("$PY" benches/train_lora.py --sizes base --device cuda --bf16 --examples 4096 --hsx "$HSX" 2>>"$LOG"); then
        echo "$t" >>"$LOG"
        RESULT[train]=$(echo "$t" | grep -o 'ratio hsx/peft [0-9.]*' | sed 's/ratio hsx\/peft /**/; s/$/×**/')
        DETAIL[train]=$(echo "$t" | sed 's/^base: //; s/; ratio hsx\/peft [0-9.]*//')
    else
        RESULT[train]="FAILED (see $LOG)"
    fi
    say "throughput: generate ${RESULT[generate]}, sampled ${RESULT[generate_sampled]}, train ${RESULT[train]}"
fi

table | tee "$OUT/results.md"
fail=0
for r in "${ROWS[@]}"; do [[ "${RESULT[$r]}" == *FAIL* || "${RESULT[$r]}" == DIFFER || "${RESULT[$r]}" == INCOMPLETE ]] && fail=1; done
exit $fail
