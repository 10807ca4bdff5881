# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow test-all coverage lint demo clean-demo

setup: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .

# Test processes for `make test` (pytest-xdist). Much of a test's time is single-threaded tracing, so on two
# cores two processes took 57% of one's time (274 s against 478 s, README); each builds its own session fixtures.
TEST_WORKERS ?= 2

# Default suite: everything not marked slow; the 15 slowest tests are listed at the end.
test: lint
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --durations=15

# Only the tests marked slow (`.ci/run` runs them after `make test`).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow --durations=15

# Line coverage of the default suite, in one process (coverage.py follows no worker processes).
coverage: setup
	$(BIN)/python -m coverage run --source=storage,configs,models,beam_jobs,pipeline -m pytest -q -m "not slow"
	$(BIN)/python -m coverage report --precision=2 | tail -1

# Everything, slow tests included.
test-all: lint
	$(BIN)/python -m pytest -q

DEMO_DIR ?= demo_output

demo: setup
	$(BIN)/python -m pipeline.demo --out $(DEMO_DIR)

clean-demo:
	rm -rf $(DEMO_DIR)
