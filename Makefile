# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow test-all lint demo clean-demo

setup: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .

# Default suite: everything not marked slow; the 15 slowest tests are listed at the end.
test: lint
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

# Only the tests marked slow (`.ci/run` runs them after `make test`).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow --durations=15

# Everything, slow tests included.
test-all: lint
	$(BIN)/python -m pytest -q

DEMO_DIR ?= demo_output

demo: setup
	$(BIN)/python -m pipeline.demo --out $(DEMO_DIR)

clean-demo:
	rm -rf $(DEMO_DIR)
