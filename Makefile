# LaneGuard: `make demo` runs the product, `make test` runs every check. Both set up what they
# need on a fresh machine (virtualenv, Python packages, system libraries) and skip set-up when
# nothing changed: the install stamp is keyed on a hash of the dependency files.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
# torch and torchvision first, at the versions this machine has on disk (the CPU-capable build
# with a working torchvision); ultralytics then finds them already satisfied.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: help demo demo-chain test lint bench venv sysdeps sysdeps-test lock clean

help:
	@echo "make demo   run the demo store (server + simulated lanes) on this computer"
	@echo "make demo-chain   a chain: HQ, a broker and two demo stores with a lane each"
	@echo "make test   run lint, type checks and the test suite"
	@echo "make bench  run the benchmarks (results in bench-results/)"
	@echo "make lint   ruff, mypy and the import layer contracts"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# System libraries: libzbar0 for barcode decoding (pyzbar). Installed with apt-get when missing
# and we are root; otherwise the exact command is printed and make stops.
sysdeps:
	@bash hardware/scripts/ensure-apt-packages.sh libzbar0:libzbar.so.0

# Tests also drive a real browser (Debian's chromium) through Playwright, and run the chain's
# own broker (nats-server) configured as HQ configures it.
sysdeps-test: sysdeps
	@bash hardware/scripts/ensure-apt-packages.sh chromium:/usr/bin/chromium nats-server:/usr/sbin/nats-server

demo: $(STAMP) sysdeps
	$(BIN)/laneguard demo

# A chain on this computer: HQ, a NATS JetStream broker and two stores (laneguard demo --chain).
demo-chain: $(STAMP) sysdeps
	@bash hardware/scripts/ensure-apt-packages.sh nats-server:/usr/sbin/nats-server
	$(BIN)/laneguard demo --chain --lanes 1

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: $(STAMP) sysdeps-test lint
	$(BIN)/pytest

bench: $(STAMP) sysdeps
	$(BIN)/laneguard bench all --out bench-results

# Re-pin every dependency after changing pyproject.toml (writes constraints.txt).
lock:
	rm -rf /tmp/laneguard-lock && $(PYTHON) -m venv /tmp/laneguard-lock
	/tmp/laneguard-lock/bin/pip install -q --upgrade pip setuptools wheel
	/tmp/laneguard-lock/bin/pip install -q $(TORCH_PINS)
	/tmp/laneguard-lock/bin/pip install -q -e '.[all]'
	( echo "# Pinned versions for reproducible installs: pip install -c constraints.txt -e '.[all]'."; \
	  echo "# Regenerate with 'make lock' after changing dependencies in pyproject.toml."; \
	  /tmp/laneguard-lock/bin/pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
