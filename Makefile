# hsx: two commands do all set-up on a fresh machine.
#   make run    bootstrap, build, run the tiny profile end to end (ledger/exp-42.json)
#   make test   bootstrap, build, run the test suite
SHELL := bash
HSX_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hsx
export HSX_CACHE
# torch-sys finds libtorch through the venv's Python when LIBTORCH_USE_PYTORCH is set.
export VIRTUAL_ENV := $(HSX_CACHE)/venv
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export HSX_MINILM ?= $(HSX_CACHE)/models/all-MiniLM-L6-v2

CONFIG ?= configs/tiny.toml
LEDGER ?= ledger/exp-42.json
HSX := target/release/hsx

.PHONY: bootstrap build test run smoke fmt
bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	cargo build --release --locked

test: build
	cargo test --release --locked

run: build
	@$(HSX) -q keygen --if-missing
	$(HSX) run --config $(CONFIG) --ledger $(LEDGER)

smoke: build
	@$(HSX) -q keygen --if-missing
	$(HSX) run --config configs/smoke.toml --ledger runs/smoke-ledger.json
