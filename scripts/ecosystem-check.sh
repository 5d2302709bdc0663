#!/usr/bin/env bash
# make ecosystem-check: hsx's exports read by the tools researchers use (docs/ecosystem.md).
#
#   1. a smoke run (`hsx run --config configs/smoke.toml`, a throwaway signing key), or the run directory
#      given as $1 (with its trusted_keys file as $2, as .ci/run passes its own smoke run);
#   2. `hsx export --format hf`, then in Python, offline: datasets.load_dataset loads every config with the
#      ledger's row counts, DatasetCard/ModelCard.load parse the cards (eval_results = compare's numbers),
#      peft.PeftConfig.from_pretrained reads each adapter; an --out inside the run directory is refused;
#   3. a real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts), `hsx export --format mlflow`
#      twice: MlflowClient.search_runs finds the parent and one child per stage instance with the ledger's
#      metrics, and the second export added nothing;
#      then a copy of the run whose report is made again and a child left unfinished: the export replaces
#      exactly those two and moves the parent to the new head;
#   4. `hsx verify --require-artifacts` still passes: exporting changed nothing recorded.
#
# RUN_DIR must be a smoke-profile run signed by $HSX_SIGNING_KEY (the copy's report is signed again).
#
# The tools come from PyPI at pinned versions (scripts/ecosystem-install.sh, once; offline afterwards).
# Usage: scripts/ecosystem-check.sh [RUN_DIR [TRUSTED_KEYS]]
set -euo pipefail
cd "$(dirname "$0")/.."

HSX="${HSX:-target/release/hsx}"
[[ -x "$HSX" ]] || { echo "ecosystem-check: $HSX is missing; run make build first" >&2; exit 1; }
scripts/ecosystem-install.sh
PY=$(scripts/ecosystem-install.sh --print-python)

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        # The server runs in a process group of its own (setsid): stop it and its workers together.
        kill -- "-$server_pid" 2>/dev/null || kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ $# -ge 1 ]]; then
    run="$1"
    trusted=()
    if [[ $# -ge 2 ]]; then trusted=(--trusted-keys "$2"); fi
else
    export HSX_SIGNING_KEY="$work/key.pem"
    "$HSX" -q keygen
    "$HSX" --json keygen --if-missing | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["trusted_keys_line"])' >"$work/trusted_keys"
    run="$work/smoke"
    t=$(date +%s)
    "$HSX" -q run --config configs/smoke.toml --out "$run"
    echo "ecosystem-check: smoke run took $(($(date +%s) - t)) s"
    trusted=(--trusted-keys "$work/trusted_keys")
fi
ledger="$run/ledger.json"
[[ -f "$ledger" ]] || { echo "ecosystem-check: no ledger at $ledger" >&2; exit 1; }

# Nothing reaches the network: the Hugging Face libraries read local files only.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME="$work/hf-home"
unset MLFLOW_TRACKING_URI

# ---- Hugging Face ----------------------------------------------------------------------------------
if "$HSX" export --format hf --ledger "$ledger" "${trusted[@]}" --out "$run/export" 2>"$work/inside.err"; then
    echo "ecosystem-check: an export into the run directory was not refused" >&2
    exit 1
fi
grep -q "inside the recorded run directory" "$work/inside.err" || { cat "$work/inside.err" >&2; exit 1; }
"$HSX" export --format hf --ledger "$ledger" "${trusted[@]}" --out "$work/hf"
"$PY" scripts/ecosystem_check.py hf --ledger "$ledger" --export "$work/hf"

# ---- MLflow ----------------------------------------------------------------------------------------
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
uri="http://127.0.0.1:$port"
setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$port" --workers 1 \
    --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/mlartifacts" \
    >"$work/mlflow.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
    if "$PY" -c "import urllib.request as u; u.urlopen('$uri/health', timeout=2)" 2>/dev/null; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/mlflow.log" >&2; echo "ecosystem-check: mlflow server exited" >&2; exit 1; }
    sleep 1
done
"$PY" -c "import urllib.request as u; u.urlopen('$uri/health', timeout=2)" \
    || { tail -n 30 "$work/mlflow.log" >&2; echo "ecosystem-check: mlflow server did not answer in 120 s" >&2; exit 1; }

"$HSX" export --format mlflow --ledger "$ledger" "${trusted[@]}" --tracking-uri "$uri"
"$PY" scripts/ecosystem_check.py mlflow --ledger "$ledger" --tracking-uri "$uri" --snapshot "$work/first.json"
"$HSX" --json export --format mlflow --ledger "$ledger" "${trusted[@]}" --tracking-uri "$uri" >"$work/second.json"
"$PY" - "$work/second.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
created = [c["stage"] for c in s["children"] if c["created"]]
if created or s["parent_created"] or s["parent_updated"] or s["deleted"] or s["artifacts"]:
    sys.exit(f"ecosystem-check: the second export wrote something: {s}")
print(f"mlflow: hsx's second export: {len(s['children'])} child runs already there, nothing written")
PY
"$PY" scripts/ecosystem_check.py mlflow --ledger "$ledger" --tracking-uri "$uri" --snapshot "$work/second-state.json" \
    --unchanged-since "$work/first.json"

# A resumed run: a copy of the run whose report is made again (a new entry replaces the old one), and a child
# that an interrupted export left unfinished. Exporting it adds the new report run, makes the unfinished
# child again, deletes the replaced and the unfinished runs, and brings the parent to the new head.
cp -a "$run" "$work/rerun"
"$HSX" -q run --config configs/smoke.toml --out "$work/rerun" --from report
"$PY" - "$uri" "$ledger" <<'PY'
import json, sys
from mlflow.tracking import MlflowClient
compare = [e for e in json.load(open(sys.argv[2]))["entries"] if e["stage"] == "compare"][-1]
client = MlflowClient(sys.argv[1])
exp = client.get_experiment_by_name(json.load(open(sys.argv[2]))["header"]["experiment"])
run = client.search_runs([exp.experiment_id], f"tags.`hsx.entry.hash` = '{compare['hash']}'")[0]
client.set_terminated(run.info.run_id, "RUNNING")
PY
"$HSX" --json export --format mlflow --ledger "$work/rerun/ledger.json" "${trusted[@]}" --tracking-uri "$uri" >"$work/third.json"
"$PY" - "$work/third.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
created = sorted(c["stage"] for c in s["children"] if c["created"])
if created != ["compare", "report"] or len(s["deleted"]) != 2 or not s["parent_updated"]:
    sys.exit(f"ecosystem-check: the export of the resumed run made {created}, deleted {s['deleted']}: {s}")
print("mlflow: the resumed run's export made the new report run and the unfinished compare run again, deleted 2")
PY
"$PY" scripts/ecosystem_check.py mlflow --ledger "$work/rerun/ledger.json" --tracking-uri "$uri" --snapshot "$work/third-state.json"

# ---- nothing recorded changed --------------------------------------------------------------------------
"$HSX" -q verify --require-artifacts --ledger "$ledger" "${trusted[@]}"
echo "ecosystem-check: all checks passed"
