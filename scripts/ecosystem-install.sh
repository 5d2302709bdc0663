#!/usr/bin/env bash
# Installs the ecosystem tools that `make ecosystem-check` tests hsx's exports with, from PyPI at pinned
# versions, into a venv of their own in the hsx cache: $HSX_CACHE/ecosystem.
#
#   datasets, huggingface_hub   load the `hsx export --format hf` dataset and parse its cards
#   peft                        read each exported adapter's configuration
#   mlflow                      the tracking server `hsx export --format mlflow` writes to, and its client
#
# peft needs torch. The bootstrap's venv ($HSX_CACHE/venv) already holds torch 2.11.0 (several GB), so
# this venv sees that venv's site-packages after its own (a .pth file), and pip counts torch as
# installed instead of downloading it again; nothing is ever installed into the bootstrap's venv.
#
# Idempotent: once the pinned set is installed it prints nothing and exits 0 within a second, and
# the check runs offline from then on. Usage: scripts/ecosystem-install.sh [--print-python]
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${HSX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hsx}"
BOOT_VENV="$CACHE/venv"
VENV="$CACHE/ecosystem"
REQS="scripts/ecosystem-requirements.txt"

if [[ "${1:-}" == "--print-python" ]]; then
    echo "$VENV/bin/python"
    exit 0
fi

fail() {
    echo "hsx ecosystem-install: $1" >&2
    shift
    for line in "$@"; do echo "  $line" >&2; done
    exit 1
}

[[ -x "$BOOT_VENV/bin/python" ]] || fail "no bootstrap venv at $BOOT_VENV" "run scripts/bootstrap.sh (or make build) first"
# The marker names the requirement file's hash: editing a pin reinstalls.
stamp=$(sha256sum "$REQS" | cut -c1-16)
marker="$VENV/.hsx-ecosystem-$stamp"
[[ -f "$marker" ]] && exit 0

echo "hsx ecosystem-install: installing $(grep -cv '^\s*#\|^\s*$' "$REQS") pinned packages into $VENV (one time)" >&2
if [[ ! -x "$VENV/bin/python" ]]; then
    "$BOOT_VENV/bin/python" -m venv "$VENV" || fail "could not create a venv at $VENV"
fi
# The bootstrap's site-packages (torch), after this venv's own.
boot_site=$("$BOOT_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
own_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$boot_site" >"$own_site/hsx-bootstrap-torch.pth"
rm -f "$VENV"/.hsx-ecosystem-*
log="$CACHE/pip-ecosystem.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS" >"$log" 2>&1; then
    tail -n 15 "$log" >&2
    fail "pip could not install $REQS (log: $log)" "common causes: no network access to PyPI, a full disk"
fi
# What the check imports must come from the pinned set, and torch from the bootstrap.
"$VENV/bin/python" - "$REQS" <<'PY' || fail "the installed versions are not the pinned ones (log: $log)"
import importlib.metadata as md, re, sys
want = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, version = re.split(r"==", line)
        want[name.strip()] = version.strip()
bad = [f"{n}: {md.version(n)} (pinned {v})" for n, v in want.items() if md.version(n) != v]
import torch
if not torch.__version__.startswith("2.11.0"):
    bad.append(f"torch: {torch.__version__} (the bootstrap's 2.11.0)")
if bad:
    sys.exit("\n".join(bad))
PY
touch "$marker"
