# MCP gateway: Envoy + proxy-wasm filter (filter/) + control plane (control-plane/).
#
#   make setup      install toolchains and test dependencies (scripts/setup.sh)
#   make build      setup, host binaries (cargo build --workspace), wasm filter, native filter
#   make wasm       only the wasm filter -> target/mcp_filter.wasm
#   make native     only the native filter (Envoy dynamic module) -> target/native-release/libmcp_filter_native.so
#   make run        build, then run mcp-gateway + Envoy on http://127.0.0.1:4444/mcp
#   make test       build, cargo tests, validate-deploy, the end-to-end tests (pytest tests/e2e), then the main files again against the native filter
#   make test-native  the main e2e files against the native filter (E2E_FILTER=native; docs/design/native-module.md)
#   make test-native-all  the whole e2e suite against the native filter (CI runs it after make test)
#   make test-unit  cargo tests only
#   make lint       rustfmt and clippy (-D warnings) on every crate, the wasm glue included; no module
#                   circle and no file over 700 lines (scripts/layout.py)
#   make test-wasm-fallback  build the filter with Debian's toolchain and run the client tests on it
#   make validate   check a catalog: mcp-gateway --validate $(CATALOG)
#   make validate-deploy  check docker-compose.yml, the Dockerfile and deploy/ (no Docker or cluster needed)
#   make generate-secrets  secrets into .env (ENV_FILE=) for docker compose; never overwrites a key it has
#   make backup / make restore  the catalog, its pins file and .env in BACKUP=mcp-gateway-backup.tar.gz, and back
#   make fuzz       fuzz the filter core: each cargo-fuzz target for FUZZ_SECONDS
#   make fuzz-smoke the same, FUZZ_SMOKE_SECONDS per target (CI runs it)
#   make bench      the benchmarks (bench/run.py): bench/results/<date>.md and .svg
#   make bench-smoke the same workloads for a second each, nothing written (CI runs it)
#   make clean      remove build output (target/); keeps .venv, .tools, node_modules
#   make distclean  clean, and remove what setup installed into the repo
#
# Variables: WASM_TOOLCHAIN=auto|rustup|debian (which Rust builds the wasm
# filter; see scripts/setup.sh), CATALOG=catalog.yaml, CARGO=cargo,
# PYTEST_ARGS= (extra pytest arguments), FUZZ_SECONDS=60, FUZZ_SMOKE_SECONDS=15
# (per target), FUZZ_TARGETS= (some of parse decide sse policy session; default all),
# BENCH_ARGS= (bench/run.py options: --seconds, --repeat), NATIVE_E2E= (the e2e files test-native runs).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
CATALOG ?= catalog.yaml
PYTEST_ARGS ?=
WASM_TOOLCHAIN ?= auto
export WASM_TOOLCHAIN
FUZZ_SECONDS ?= 60
# CI's share: 6 targets x 15 s, plus about 100 s to build cargo-fuzz and
# the targets on a fresh machine.
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGETS ?=

PYTHON := .venv/bin/python
GATEWAY_RELEASE := target/release/mcp-gateway

.PHONY: all setup build host wasm native test-native test-native-e2e test-native-all release run test test-unit lint test-e2e test-wasm-fallback validate validate-deploy generate-secrets backup restore fuzz fuzz-smoke bench bench-smoke clean distclean help

all: build

help:
	@sed -n '3,28p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --workspace
	bash scripts/build-wasm.sh
	$(CARGO) build -p mcp-filter-native --profile native-release

host: setup
	$(CARGO) build --workspace

wasm: setup
	bash scripts/build-wasm.sh

# The native filter: optimised, with unwinding kept for the hooks' panic
# guard ([profile.native-release] in Cargo.toml). Envoy finds it through
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH=target/native-release (scripts/run.sh).
native: setup
	$(CARGO) build -p mcp-filter-native --profile native-release

release: setup
	$(CARGO) build --release -p mcp-control-plane

run: build release
	bash scripts/run.sh

# release: the README's quick start runs `make run` (tests/e2e/test_quickstart.py).
test: build release
	$(MAKE) --no-print-directory lint
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory validate-deploy
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory test-native-e2e

test-unit:
	$(CARGO) test --workspace

# The filter's no-panic lints (filter/src/lib.rs) hold only where clippy runs:
# natively for the core, for wasm32 for the glue, and on the fuzz crate. The
# crates' layout (no import circle, no file past 700 lines) is checked too.
lint:
	$(CARGO) fmt --all --check
	cd filter/fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || \
		{ echo "lint: the wasm32-unknown-unknown target is missing: run 'make setup' (rustup target add wasm32-unknown-unknown)"; exit 1; }
	$(CARGO) clippy -p mcp-filter -p mcp-bench-noop --target wasm32-unknown-unknown -- -D warnings
	cd filter/fuzz && $(CARGO) clippy --bins -- -D warnings
	python3 scripts/layout.py

# The e2e tests need `make build` first (`make test` does it); the console's
# need Chromium (setup.sh browser).
test-e2e:
	bash scripts/setup.sh browser
	$(PYTHON) -m pytest -q tests/e2e $(PYTEST_ARGS)

# The same e2e tests against the native filter, for the files that exercise
# the filter's paths (NATIVE_E2E); the whole suite with NATIVE_E2E=tests/e2e.
# `make test` runs these after the whole suite against the wasm filter; twice
# the whole suite would not fit its ~20 minutes on 2 cores (docs/design/native-module.md).
NATIVE_E2E ?= tests/e2e/test_clients.py tests/e2e/test_sessions.py tests/e2e/test_security.py tests/e2e/test_bad_input.py \
	tests/e2e/test_many_servers.py tests/e2e/test_streaming.py tests/e2e/test_metrics.py tests/e2e/test_access_log.py \
	tests/e2e/test_tool_router.py tests/e2e/test_pinned_tools.py tests/e2e/test_virtual_servers.py tests/e2e/test_file_secrets.py \
	tests/e2e/test_upstream_oauth.py
test-native: build
	$(MAKE) --no-print-directory test-native-e2e

test-native-e2e:
	E2E_FILTER=native $(PYTHON) -m pytest -q $(NATIVE_E2E) $(PYTEST_ARGS)

# The whole suite against the native filter: what CI (.ci/run) runs after
# `make test`, which keeps to the main files for its ~20 minutes.
test-native-all: build release
	$(MAKE) --no-print-directory test-native-e2e NATIVE_E2E=tests/e2e

# The fallback route for machines where rustup cannot add the wasm target:
# build the filter with Debian's rustc-web and -Zbuild-std (installed by
# setup when WASM_TOOLCHAIN=debian), then run the client tests against that
# module in the real Envoy. Needs root for apt-get; CI runs it.
test-wasm-fallback: build
	WASM_TOOLCHAIN=debian bash scripts/setup.sh
	WASM_TOOLCHAIN=debian WASM_OUT=target/mcp_filter.debian.wasm bash scripts/build-wasm.sh
	E2E_WASM=target/mcp_filter.debian.wasm $(PYTHON) -m pytest -q tests/e2e/test_clients.py $(PYTEST_ARGS)

validate: release
	$(GATEWAY_RELEASE) --validate $(CATALOG)

# The Forge guide's commands: secrets into the env file docker compose reads
# (never overwriting a key it has), and what the gateway keeps (the catalog,
# its pinned tool definitions, the keys) in one archive and back.
ENV_FILE ?= .env
BACKUP ?= mcp-gateway-backup.tar.gz
generate-secrets:
	ENV_FILE=$(ENV_FILE) bash scripts/generate-secrets.sh
backup:
	CATALOG=$(CATALOG) ENV_FILE=$(ENV_FILE) BACKUP=$(BACKUP) bash scripts/backup.sh backup
restore:
	CATALOG=$(CATALOG) ENV_FILE=$(ENV_FILE) BACKUP=$(BACKUP) bash scripts/backup.sh restore

# The deployment files (docker-compose.yml, Dockerfile, deploy/) checked
# without Docker or a cluster: schemas, promtool, hadolint, Envoy's
# --mode validate, and their consistency (scripts/validate-deploy.sh).
validate-deploy: host
	bash scripts/setup.sh deploy
	bash scripts/validate-deploy.sh

# Fuzzing needs no setup but cargo-fuzz (scripts/fuzz.sh installs it); see
# docs/design/fuzzing.md.
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The benchmarks need release builds of the control plane and the bench
# server, the no-op wasm module of the envoy-noop-wasm target
# (bench/noop-filter), and wrk and valgrind (scripts/setup.sh bench installs
# them).
BENCH_NOOP := WASM_PACKAGE=mcp-bench-noop WASM_ARTIFACT=mcp_bench_noop bash scripts/build-wasm.sh

bench: build
	bash scripts/setup.sh bench
	$(CARGO) build --release -p mcp-control-plane -p mcp-bench-server
	$(BENCH_NOOP)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

bench-smoke: build
	bash scripts/setup.sh bench
	$(CARGO) build --release -p mcp-control-plane -p mcp-bench-server
	$(BENCH_NOOP)
	$(PYTHON) bench/run.py --smoke

fuzz-smoke:
	bash scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

clean:
	$(CARGO) clean
	rm -rf .run

distclean: clean
	rm -rf .venv .tools tests/node_modules
