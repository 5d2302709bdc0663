# hsx: two commands do all set-up on a fresh machine.
#   make run        bootstrap, build, and a fresh run of the tiny profile into a directory of your own
#                   (runs/local/exp-42/: ledger.json signed by your key, the artifacts, report/); run it
#                   again to resume
#   make test       bootstrap, build, run the test suite
#   make lint       cargo fmt --check and cargo clippy -D warnings (CI runs it)
#   make reproduce  re-run the shipped ledger/exp-42.json, compare every stage, sign a reproduction ledger
#   make rehearse   the base profile's rehearsal on this CPU (configs/base-rehearsal.toml: flan-t5-base
#                   shapes, random weights, bf16; docs/base-profile.md), then verify its ledger
#   make ecosystem-check  hsx export read by the real tools: a smoke run exported to a Hugging Face dataset and
#                   cards (datasets, huggingface_hub, peft) and to a local MLflow server, twice (docs/ecosystem.md)
#   make slurm-check  the Slurm executor on a real one-node Slurm cluster on loopback (installs slurm-wlm
#                   and munge when missing; root): smoke with two replicates as Slurm jobs (docs/slurm.md)
#   make interop-check  the ledger checked by other ecosystems' verifiers (in-toto-verify, securesystemslib +
#                   rfc8785, @sigstore/verify) on `hsx export`s of a smoke run (or of INTEROP_LEDGER=<ledger>),
#                   and each on tampered copies it must refuse (docs/interop.md)
#   make ship       maintainers: (re)make the shipped exp-42 (ledger/exp-42.json, report/), signed by the
#                   key listed in ledger/trusted_keys
SHELL := bash
HSX_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hsx
export HSX_CACHE
# torch-sys finds libtorch through the venv's Python when LIBTORCH_USE_PYTORCH is set.
export VIRTUAL_ENV := $(HSX_CACHE)/venv
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export HSX_MINILM ?= $(HSX_CACHE)/models/all-MiniLM-L6-v2
# CosmosQA: an offline mirror if you have one (a directory holding cosmosqa/valid.csv), else the copy the
# bootstrap downloads into the cache and checks against the official sha256.
export HSX_DATA_MIRROR ?= $(HSX_CACHE)/data

CONFIG ?= configs/tiny.toml
OUT ?= runs/local/exp-42
REPRO_OUT ?= runs/local/exp-42-reproduce
REHEARSAL_OUT ?= runs/local/base-rehearsal
HSX := target/release/hsx

.PHONY: bootstrap build lint test run reproduce ship smoke rehearse gpu-check slurm-check interop-install interop-check ecosystem-check
bootstrap:
	@scripts/bootstrap.sh

# The independent verifiers (PyPI in-toto, securesystemslib, rfc8785; npm @sigstore/verify, @sigstore/bundle),
# pinned, into $(HSX_CACHE)/interop: tests/ledger_interop.rs and tests/pipeline.rs call them.
interop-install:
	@scripts/interop-install.sh

build: bootstrap
	cargo build --release --locked

# rustfmt (rustfmt.toml) and clippy with every warning an error; a lint is allowed only with a comment
# that says why.
lint: bootstrap
	cargo fmt --check
	cargo clippy --all-targets --locked --release -- -D warnings

# The tests run under the CPU settings hsx pins for itself (src/runtime.rs PORTABLE_PINS), so that tests
# comparing two trainings bit for bit do not depend on MKL/OpenMP adapting their thread teams to load.
test: build interop-install
	ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE,STRICT MKL_DYNAMIC=FALSE OMP_DYNAMIC=FALSE \
	ONEDNN_MAX_CPU_ISA=AVX2 ONEDNN_DEFAULT_FPMATH_MODE=STRICT TOKENIZERS_PARALLELISM=false \
	cargo test --release --locked

run: build
	@$(HSX) -q keygen --if-missing
	$(HSX) run --config $(CONFIG) --out $(OUT)

reproduce: build
	@$(HSX) -q keygen --if-missing
	@if [[ -e $(REPRO_OUT) ]]; then echo "make reproduce: $(REPRO_OUT) exists; remove it or pass REPRO_OUT=<new dir>" >&2; exit 2; fi
	$(HSX) reproduce --ledger ledger/exp-42.json --trusted-keys ledger/trusted_keys --out $(REPRO_OUT)

ship: build
	$(HSX) run --config configs/tiny.toml --ledger ledger/exp-42.json

smoke: build
	@$(HSX) -q keygen --if-missing
	$(HSX) run --config configs/smoke.toml --out runs/local/smoke

# bf16 on the CPU needs the processor's own bf16 kernels, so the rehearsal runs unpinned (recorded).
rehearse: build
	@$(HSX) -q keygen --if-missing
	HSX_CPU_PINS=native $(HSX) run --config configs/base-rehearsal.toml --out $(REHEARSAL_OUT)
	$(HSX) verify --ledger $(REHEARSAL_OUT)/ledger.json --require-artifacts --data-mirror $(HSX_DATA_MIRROR)

INTEROP_LEDGER ?=
interop-check: build
	scripts/interop-check.sh $(INTEROP_LEDGER)

# On a machine with a CUDA GPU: scripts/gpu-check.sh (parity, bf16, determinism, throughput, rehearsal).
gpu-check: build
	scripts/gpu-check.sh

# The Slurm executor's integration test (tests/slurm.rs): installs slurm-wlm and munge when missing,
# starts a one-node cluster on loopback in a temporary directory, runs the test, stops the daemons.
slurm-check: build
	@scripts/slurm-local.sh ensure
	@dir=$$(mktemp -d); trap 'scripts/slurm-local.sh stop '"$$dir"'; rm -rf '"$$dir" EXIT; \
	scripts/slurm-local.sh start "$$dir" && \
	SLURM_CONF="$$dir/slurm.conf" ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE,STRICT MKL_DYNAMIC=FALSE OMP_DYNAMIC=FALSE \
	ONEDNN_MAX_CPU_ISA=AVX2 ONEDNN_DEFAULT_FPMATH_MODE=STRICT TOKENIZERS_PARALLELISM=false \
	cargo test --release --locked --test slurm -- --ignored --nocapture

# hsx export against the real tools, installed at pinned versions into $(HSX_CACHE)/ecosystem
# (scripts/ecosystem-install.sh): a smoke run, or ECOSYSTEM_RUN=<run dir> [ECOSYSTEM_TRUSTED=<trusted_keys>].
ECOSYSTEM_RUN ?=
ECOSYSTEM_TRUSTED ?=
ecosystem-check: build
	scripts/ecosystem-check.sh $(ECOSYSTEM_RUN) $(ECOSYSTEM_TRUSTED)
