# camera-edge-agent: `make run` (whole local loop, no hardware) and `make test` (whole suite).
# Both install what they need: Debian packages (when missing), the venv and pinned pip packages.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
SYSDEPS_STAMP := build/.sysdeps
BENCHES :=
# ai-edge-litert for the detection benchmarks lives in its own venv (mk/detect_model.mk)
LITERT_VENV := build/litert-venv

# Debian packages the project needs on a fresh machine (tests, demo, simulators).
DEB_PACKAGES := mosquitto mosquitto-clients openssl ffmpeg \
	gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav python3-gi python3-gst-1.0 chromium

.PHONY: run test lint typecheck unit schemas bench sysdeps venv clean help

help:
	@echo "make run    - local loop: broker (TLS), camera simulator, agent, center console"
	@echo "make test   - install prerequisites, lint, type-check and run the whole test suite"
	@echo "make bench  - run every benchmark (each prints one JSON line); make bench-NAME runs one"

sysdeps: $(SYSDEPS_STAMP)
$(SYSDEPS_STAMP): tools/install_system_deps.sh Makefile
	@bash tools/install_system_deps.sh $(DEB_PACKAGES)
	@mkdir -p build && touch $@

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml $(SYSDEPS_STAMP)
	@bash tools/make_venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

run: $(VENV_STAMP)
	$(PY) -m tools.demo

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy agent provisioning firmware_hooks tools

schemas: $(VENV_STAMP)
	$(PY) -m tools.gen_schemas

test: $(VENV_STAMP) lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: $(VENV_STAMP)
	@for b in $(BENCHES); do $(MAKE) --no-print-directory $$b || exit 1; done

BENCHES += bench-rpc
bench-rpc: $(VENV_STAMP)
	$(PY) bench/rpc.py

clean:
	rm -rf build $(VENV) .mypy_cache .ruff_cache .pytest_cache

-include mk/*.mk
