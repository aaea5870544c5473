# Every target bootstraps .venv by itself on a fresh machine (Python 3.11+ needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := sidecar tests bench

.PHONY: all demo test lint bench image clean servers

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m sidecar drill --routing service,registry --json out/drill.json

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# Real registry servers for the tests (Debian packages); the tests start and stop them.
servers:
	@command -v etcd >/dev/null && test -x /usr/share/zookeeper/bin/zkServer.sh || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server zookeeper; }

test: lint servers
	$(BIN)/pytest

# The agent is measured as the image runs it: a venv with the runtime dependencies only.
RUNTIME := .venv-runtime
$(RUNTIME)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME)
	$(RUNTIME)/bin/pip install --quiet --upgrade pip
	$(RUNTIME)/bin/pip install --quiet .
	@touch $@

bench: $(STAMP) $(RUNTIME)/.installed
	$(RUNTIME)/bin/pip install --quiet --no-deps --force-reinstall .
	$(BIN)/python bench/run.py --runtime-python $(RUNTIME)/bin/python --out docs/benchmarks.md

image:
	docker build -t shutdown-coordinator:dev .

clean:
	rm -rf $(VENV) $(RUNTIME) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
