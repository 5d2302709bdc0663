#!/usr/bin/env bash
# `make interop-check`: an hsx ledger checked by verifiers nobody here wrote (docs/interop.md).
#
#   scripts/interop-check.sh [LEDGER]
#
# Without LEDGER it makes one: a smoke run in a temporary directory, signed by a throwaway key. Then it
# exports the ledger in every format (`hsx export`), the in-toto and SLSA documents signed by a second
# throwaway key (the export signer need not be the ledger's), and runs:
#   securesystemslib + rfc8785 on every DSSE envelope (entries, head, layout, links, statements, bundles):
#       signatures verify, payloads are RFC 8785 canonical, one changed payload byte is rejected;
#   in-toto-verify on the layout and links: passes; fails on a tampered link, a swapped product (re-signed),
#       a missing link, an edited layout;
#   @sigstore/verify on every bundle: verifies; one changed payload byte is rejected.
# The verifiers come from scripts/interop-install.sh (pinned, in $HSX_CACHE/interop; run first here).
set -euo pipefail
cd "$(dirname "$0")/.."
export HSX_CACHE="${HSX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hsx}"
scripts/interop-install.sh
py="$HSX_CACHE/interop/venv/bin/python"
hsx=target/release/hsx
[[ -x $hsx ]] || { echo "interop-check: $hsx is not built (make build)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $# -ge 1 ]]; then
    ledger=$1
else
    HSX_SIGNING_KEY="$work/ledger-key.pem" $hsx -q keygen
    t=$(date +%s)
    HSX_SIGNING_KEY="$work/ledger-key.pem" $hsx -q run --config configs/smoke.toml --out "$work/smoke"
    echo "interop-check: smoke run took $(( $(date +%s) - t )) s"
    ledger="$work/smoke/ledger.json"
fi
$hsx -q keygen --out "$work/export-key.pem"
for f in dsse sigstore in-toto slsa; do
    $hsx export --format "$f" --ledger "$ledger" --out "$work/export/$f" --key "$work/export-key.pem"
done

status=0
"$py" scripts/interop/check_envelopes.py "$work"/export/{dsse,sigstore,in-toto,slsa} || status=1
mkdir "$work/in-toto-cases"
"$py" scripts/interop/check_intoto.py "$work/export/in-toto" "$work/export-key.pem" "$work/in-toto-cases" || status=1
NODE_PATH="$HSX_CACHE/interop/npm/node_modules" node scripts/interop/verify_bundles.js "$work/export/sigstore" || status=1
if [[ $status -ne 0 ]]; then
    echo "interop-check: FAILED" >&2
    exit 1
fi
echo "interop-check: passed"
