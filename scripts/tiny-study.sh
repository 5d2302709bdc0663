#!/usr/bin/env bash
# The tiny-profile study (docs/tiny-profile.md): each row is configs/tiny.toml with a few keys changed.
# It runs prepare, preregister, base-model and train-A into runs/study/<base>/ and prints model A's
# validation F1 (greedy answers to the 300 human validation questions) against the best trivial baseline,
# with the paired 95% cluster-bootstrap interval, from train-A's train_metrics.json. Rows that share a
# base model (same [model] keys) share a run directory, so only train-A re-runs.
#
#   scripts/tiny-study.sh <row>        e.g. scripts/tiny-study.sh lr3e-3
#   scripts/tiny-study.sh --list
set -euo pipefail
cd "$(dirname "$0")/.."
hsx=${HSX:-target/release/hsx}

# row | base-model group | overrides (section.key=value, TOML values)
rows=(
  "shipped|b400|"
  "warm5|b400|train.warmup_share=0.05"
  "lr3e-3|b400|train.warmup_share=0.05 train.lr=3e-3"
  "lr3e-3-e6|b400|train.warmup_share=0.05 train.lr=3e-3 train.epochs=6"
  "alltargets|b400|train.warmup_share=0.05 train.lr=3e-3 lora.targets=[\"q\",\"k\",\"v\",\"o\",\"wi0\",\"wi1\",\"wo\"]"
  "opts1200|opts1200|model.pretrain.corpus=\"contexts-questions-options\" model.pretrain.steps=1200 model.pretrain.warmup_share=0.05 train.warmup_share=0.05 train.lr=3e-3 lora.targets=[\"q\",\"k\",\"v\",\"o\",\"wi0\",\"wi1\",\"wo\"]"
)

if [[ ${1:-} == --list || -z ${1:-} ]]; then
  printf '%s\n' "${rows[@]}" | column -t -s'|'
  exit 0
fi
row=$1
spec=$(printf '%s\n' "${rows[@]}" | awk -F'|' -v r="$row" '$1 == r')
[[ -n $spec ]] || { echo "tiny-study: no row $row (see --list)" >&2; exit 2; }
IFS='|' read -r _ group overrides <<<"$spec"
dir=runs/study/$group
mkdir -p "$dir"
mkdir -p runs/study/configs
cfg=runs/study/configs/$row.toml
# Apply section.key=value overrides to a copy of configs/tiny.toml (a key is replaced inside its
# section, or added at the section's end).
python3 - configs/tiny.toml "$cfg" $overrides <<'PY'
import re, sys
src, dst, *sets = sys.argv[1:]
lines = open(src).read().split("\n")
for s in sets:
    key, val = s.split("=", 1)
    section, name = key.rsplit(".", 1)
    head = f"[{section}]"
    try:
        start = lines.index(head)
    except ValueError:
        sys.exit(f"tiny-study: configs/tiny.toml has no section {head}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    hit = next((i for i in range(start + 1, end) if re.match(rf"{re.escape(name)}\s*=", lines[i])), None)
    if hit is None:
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines.insert(end, f"{name} = {val}")
    else:
        lines[hit] = f"{name} = {val}"
open(dst, "w").write("\n".join(lines))
PY
t0=$(date +%s)
for st in prepare preregister base-model train-A; do
  "$hsx" -q run --config "$cfg" --out "$dir" --only "$st"
done
secs=$(( $(date +%s) - t0 ))
python3 - "$dir" "$row" "$secs" <<'PY'
import json, sys
d, row, secs = sys.argv[1:]
m = json.load(open(f"{d}/train-A/train_metrics.json"))
b = json.load(open(f"{d}/base-model/pretrain_metrics.json"))
v = m["validation"]
print(json.dumps({
    "row": row, "seconds_this_call": int(secs),
    "pretrain_final_loss": b["pretrain"]["final_train_loss"],
    "train_steps": m["optimizer_steps"], "warmup": m["recipe"]["warmup_steps"], "lr": m["recipe"]["lr"],
    "train_loss_first_last": [m["loss_curve"][0][1], m["loss_curve"][-1][1]],
    "val_loss_per_epoch": m["val_loss_per_epoch"], "trainable": m["trainable_parameters"],
    "val_f1": v["f1"], "val_f1_ci95": v["f1_ci95"], "baselines": v["baselines_f1"],
    "gap": v.get("gap_to_best_baseline"), "gap_ci95": v.get("gap_ci95"),
    "distinct_predictions": v["distinct_predictions"], "examples": v["examples"],
}, indent=1))
PY
