# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Two workers, each test file whole on one worker (module fixtures such as a dev stack stay in one place):
# the tests wait on their servers more than they compute, so two share the two cores well.
PYTEST_WORKERS ?= 2

.PHONY: install run stack env test test-fast lint clean-stack

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ needed, got " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## Start PostgreSQL, both S3 sites and `dagster dev` (UI on http://127.0.0.1:3000). Ctrl-C stops all.
run: install
	$(BIN)/vault-pipeline dev

## Only the embedded stack (no Dagster), in the foreground.
stack: install
	$(BIN)/vault-pipeline stack up

## Print the running stack's settings as export lines: eval "$$(make -s env)"
env: install
	@$(BIN)/vault-pipeline stack env

lint: install
	$(BIN)/ruff check .

## The whole suite, slow scenarios included (each test starts the servers it needs).
test: install lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

## Copy benchmark against rclone and a naive boto3 loop (docs/benchmarks.md): BENCH_ARGS="--scale 0.2 --runs 2"
.PHONY: bench
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python benchmarks/copy_bench.py $(BENCH_ARGS)

## Delete the embedded stack's data (.vault/). Locked cold objects go with it: dev data only.
clean-stack:
	rm -rf .vault
