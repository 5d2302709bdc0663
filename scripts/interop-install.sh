#!/usr/bin/env bash
# The independent verifiers that `make interop-check` and the ledger_interop test run, installed from
# their registries at pinned versions into the cache (outside the work tree, shared by every clone):
#   $HSX_CACHE/interop/venv   PyPI: in-toto (in-toto-verify), securesystemslib, rfc8785, and their dependencies
#   $HSX_CACHE/interop/npm    npm:  @sigstore/verify, @sigstore/bundle, and their dependencies
# Idempotent: silent and instant once the pinned versions are installed; everything then runs offline.
# Needs Python 3.10-3.13 (python3, or $PYTHON) and Node 20 with npm.
set -euo pipefail
HSX_CACHE="${HSX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hsx}"
dir="$HSX_CACHE/interop"
python="${PYTHON:-python3}"

# Every package pinned, dependencies included (in-toto 3.1.0 asks for securesystemslib[crypto] ~= 1.0).
py_pins=(
    in-toto==3.1.0
    securesystemslib==1.6.0
    rfc8785==0.1.4
    cryptography==51.0.1
    cffi==2.1.1
    pycparser==3.12
    attrs==26.1.0
    iso8601==2.1.0
    pathspec==1.1.1
    python-dateutil==4.0.0
    tzdata==2026.6
)
npm_pins=(
    @sigstore/verify@2.1.1
    @sigstore/bundle@3.1.0
    @sigstore/core@2.0.0
    @sigstore/protobuf-specs@0.4.3
)
stamp="$dir/installed"
want="$(printf '%s\n' "${py_pins[@]}" "${npm_pins[@]}")"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/venv/bin/in-toto-verify" \
      && -d "$dir/npm/node_modules/@sigstore/verify" ]]; then
    exit 0
fi

command -v node >/dev/null || { echo "interop-install: node (Node 20) is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "interop-install: npm is not installed" >&2; exit 1; }
mkdir -p "$dir"
rm -f "$stamp"
echo "interop-install: Python verifiers into $dir/venv" >&2
if [[ ! -x "$dir/venv/bin/python" ]]; then
    "$python" -m venv "$dir/venv"
fi
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${py_pins[@]}"
# --no-deps installs exactly the list; `pip check` then proves the list is complete and consistent.
"$dir/venv/bin/python" -m pip check >/dev/null
echo "interop-install: npm verifiers into $dir/npm" >&2
mkdir -p "$dir/npm"
npm install --prefix "$dir/npm" --no-fund --no-audit --save-exact --loglevel=error "${npm_pins[@]}" >/dev/null
# The tree must hold exactly the pinned versions (npm resolves ranges; these pins satisfy them).
npm ls --prefix "$dir/npm" --all >/dev/null
for p in "${npm_pins[@]}"; do
    name="${p%@*}"
    got=$(node -p "require('$dir/npm/node_modules/$name/package.json').version")
    [[ "$name@$got" == "$p" ]] || { echo "interop-install: $name is $got, not the pinned ${p##*@}" >&2; exit 1; }
done
printf '%s\n' "$want" > "$stamp"
