# Two commands on a fresh machine with Python 3.11 or 3.12: `make run` and `make test`.
# Python: $(PYTHON) if given, else the first of python3.11, python3.12, python3 that is 3.11 or 3.12.
SUPPORTED_PYTHON := import sys; sys.exit(sys.version_info[:2] not in [(3, 11), (3, 12)])
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do \
    $$p -c '$(SUPPORTED_PYTHON)' >/dev/null 2>&1 && command -v $$p && break; done)
TRIED := none (python3.11, python3.12 and python3 are missing or other versions)
NO_PYTHON = make: Python 3.11 or 3.12 is needed, found $(or $(PYTHON),$(TRIED)): \
    install one (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; or pyenv install 3.11) or name it: make PYTHON=/path/to/python3.11
VENV := .venv
OLD_VENV := make: $(VENV) was made with another Python than 3.11 or 3.12: rm -rf $(VENV) and run make again
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Exact versions of everything installed (requirements/README.md); `make lock` writes them from pyproject.toml.
DEV_LOCK := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
BENCH_LOCK := requirements/bench.lock
# The installers themselves are pinned too.
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release pyproject.toml allows;
# LOCK_ARGS="--upgrade-package boto3" only one. Without it the current pins are kept where still allowed.
LOCK_ARGS ?=
PYTEST_ARGS ?=
# Two workers, each test file whole on one worker (module fixtures such as a dev stack stay in one place):
# the tests wait on their servers more than they compute, so two share the two cores well.
PYTEST_WORKERS ?= 2

.PHONY: install lock run run-cluster stack env test test-fast lint clean-stack

install: $(STAMP)

# The venv, with a supported Python and the pinned pip.
$(BIN)/python:
	@[ -n "$(PYTHON)" ] && $(PYTHON) -c '$(SUPPORTED_PYTHON)' || { echo "$(NO_PYTHON)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==$(PIP_VERSION)"

# make, make run and make test: the dev lock (runtime + dev + test extras, hashes checked), then the
# project itself without dependencies. Again whenever pyproject.toml or the lock changes.
$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	@$(BIN)/python -c '$(SUPPORTED_PYTHON)' || { echo "$(OLD_VENV)" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Write requirements/*.lock again from pyproject.toml (universal: Python 3.11 and 3.12, every platform).
## The runtime and bench locks are resolved within the dev lock, so all three agree on every shared pin.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(LOCK_ARGS)
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV_COMPILE) --extra dev --extra test -o $(DEV_LOCK)
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(RUNTIME_LOCK)
	$(UV_COMPILE) --extra dev --extra test --extra bench -c $(DEV_LOCK) -o $(BENCH_LOCK)

## Start PostgreSQL, both S3 sites and `dagster dev` (UI on http://127.0.0.1:3000). Ctrl-C stops all.
run: install
	$(BIN)/vault-pipeline dev

## The same with the runs on Celery workers: Redis (Debian's redis-server, installed through apt when missing)
## and WORKERS workers, each its own process tree and spool (docs/deployment.md). `make run-cluster WORKERS=4`
WORKERS ?= 2
run-cluster: install
	bash .ci/ensure-redis
	$(BIN)/vault-pipeline dev --workers $(WORKERS)

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
	$(BIN)/python -m pip install --quiet -r $(BENCH_LOCK)
	$(BIN)/python benchmarks/copy_bench.py $(BENCH_ARGS)

## SFTP intake against rclone copy, sftp -> s3, on the same servers (docs/sftp-intake.md): BENCH_ARGS="--server openssh"
.PHONY: bench-sftp
bench-sftp: install
	$(BIN)/python -m pip install --quiet -r $(BENCH_LOCK)
	$(BIN)/python benchmarks/sftp_bench.py $(BENCH_ARGS)

## Full (backup + restore) versus incremental (journal catch-up) on 1M tracking rows (docs/secondary-site.md):
## BENCH_ARGS="--rows 200000 --jobs 2 --rebuild"
.PHONY: bench-db
bench-db: install
	$(BIN)/python benchmarks/db_backup_bench.py $(BENCH_ARGS)

## Delete the embedded stack's data (.vault/). Locked cold objects go with it: dev data only.
clean-stack:
	rm -rf .vault
