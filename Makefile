# OmniCloud Core — every workflow in one place. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36mmake %-10s\033[0m %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Build and run `omnicloud demo` on the embedded SQLite default (omnicloud-demo.db)
	$(CARGO) run --release --locked -p omnicloud-runtime --bin omnicloud -- demo

.PHONY: toolchain
toolchain: ## Check the Rust toolchain has rustfmt and clippy
	@$(CARGO) fmt --version >/dev/null || { echo "rustfmt is missing: rustup component add rustfmt"; exit 1; }
	@$(CARGO) clippy --version >/dev/null || { echo "clippy is missing: rustup component add clippy"; exit 1; }

.PHONY: system-packages
system-packages: ## Debian packages the tests need: knot (the authoritative DNS server of the RFC 2136 tests)
	@if [ ! -x /usr/sbin/knotd ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends knot knot-dnsutils; \
	fi
	@/usr/sbin/knotd --version

.PHONY: setup
setup: toolchain system-packages ## Install the Python package (release build, editable) with its test extras
	$(PYTHON) -m pip install --quiet --disable-pip-version-check 'maturin>=1.9.4,<2'
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e '.[test]'
	$(PYTHON) -c "import omnicloud; print('omnicloud', omnicloud.__version__, 'installed')"

.PHONY: build
build: ## Rebuild the extension module after Rust changes (same as setup, without extras)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .

.PHONY: lint
lint: toolchain ## cargo fmt --check, cargo clippy -D warnings, mypy (strict) and mypy.stubtest for the .pyi
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(PYTHON) -m mypy
	cd /tmp && $(PYTHON) -m mypy.stubtest omnicloud._omnicloud

.PHONY: test-rust
test-rust: ## cargo test --workspace
	$(CARGO) test --workspace --locked

.PHONY: test-python
test-python: ## Every pytest suite (unit, integration, performance, contract, chaos)
	$(PYTHON) -m pytest tests

.PHONY: test
test: setup lint test-rust test-python ## Install what tests need, then lints, cargo test and every pytest suite

.PHONY: bench
bench: ## Criterion benchmarks (Rust)
	$(CARGO) bench -p omnicloud-benches

.PHONY: peers
peers: ## Side-by-side comparisons against the peers, as JSON
	$(PYTHON) benches/peers.py audit --json

.PHONY: fmt
fmt: ## Format the Rust code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove build outputs and the demo database
	$(CARGO) clean
	rm -f omnicloud-demo.db omnicloud-demo.db-wal omnicloud-demo.db-shm python/omnicloud/*.so
