# smsgw — the README's commands. Each target does its own set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYPROJECT_SHA := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(PYPROJECT_SHA)
RUNTIME_STAMP := $(VENV)/.runtime-$(PYPROJECT_SHA)

.PHONY: demo test lint bench check-config clean image stack-check

# The venv itself (once): Python 3.11+ and its venv module, installed with apt-get when root.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "smsgw needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "Python's venv module is missing: install it (Debian: sudo apt-get install python3-venv)"; exit 1; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# smsgw and its runtime dependencies only: what `make demo` needs.
$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@rm -f $(VENV)/.runtime-*
	@touch $(RUNTIME_STAMP)

# With the test extra (the vendors' SDKs, sslyze, ruff ...): tests, lint, bench.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* $(VENV)/.runtime-*
	@touch $(STAMP) $(RUNTIME_STAMP)

redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (the tests start their own on a free port)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else echo "redis-server is missing: install it (Debian: sudo apt-get install redis-server) and run make test again"; exit 1; fi; \
	fi
.PHONY: redis-server

chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (the audit report test opens the HTML report headless)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing: install it (Debian: sudo apt-get install chromium) and run make test again"; exit 1; fi; \
	fi
.PHONY: chromium

# DEMO_ARGS passes options: make demo DEMO_ARGS="--port 0" (free ports) or "--port 8444 --admin-port 9001"
demo: $(RUNTIME_STAMP)
	$(BIN)/smsgw demo $(DEMO_ARGS)

test: $(STAMP) redis-server chromium
	$(BIN)/python -m pytest -q -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

# The load generator (wrk) and the stand-in vendor (nginx; without it an asyncio stand-in, slower).
# BENCH_ARGS passes options: make bench BENCH_ARGS="--quick --workers --soak 300"
bench: $(STAMP) redis-server
	@has_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; \
	missing=""; command -v wrk >/dev/null 2>&1 || missing="wrk"; has_nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (the benchmark's load generator and stand-in vendor)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif ! command -v wrk >/dev/null 2>&1; then \
	    echo "wrk is missing: install it (Debian: sudo apt-get install $$missing) and run make bench again"; exit 1; \
	  else echo "nginx is missing: the bench uses its slower asyncio stand-in vendor (Debian: sudo apt-get install nginx-light)"; fi; \
	fi
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The container image from the Dockerfile, with podman (installed when root on Debian); where no
# registry answers, its base and the compose file's Redis and Prometheus are made from Debian's
# packages (deploy/podman/image.sh).
image:
	bash deploy/podman/image.sh

# deploy/compose.yaml (gateway x2, Redis, sandbox, Prometheus) brought up and checked end to end,
# then removed (deploy/podman/stack_check.py).
stack-check: image $(STAMP)
	@test -x $(BIN)/podman-compose || $(BIN)/python -m pip install -q -e '.[stack]'
	PYTHON=$(abspath $(BIN))/python bash deploy/podman/stack-check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .smsgw-demo
