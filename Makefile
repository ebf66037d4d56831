# mlpipe: `make demo` and `make test` set up whatever is missing, then run. Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
RUNTIME := .venv-runtime
BENCH_VENV := .venv-bench
UV := $(VENV)/bin/uv
STAMPS := .stamps
BENCH ?=
PYTEST_ARGS ?=

export UV_LINK_MODE := copy

.PHONY: help venv runtime system bench-venv demo test test-unit test-runtime lint format bench lock clean

help:
	@echo "make demo   - build what is missing, run the penguins pipeline through Airflow, print a summary"
	@echo "make test   - build what is missing, lint, run the whole test suite"
	@echo "make bench  - run the benchmarks (BENCH=<name> runs one)"
	@echo "make lock   - recompile requirements/*.lock from requirements/*.in"

$(STAMPS):
	mkdir -p $(STAMPS)

# The Airflow side: Airflow 3, this provider (editable) and the dev tools, from the lock.
$(STAMPS)/venv: requirements/airflow.lock setup.cfg | $(STAMPS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	$(UV) pip sync -q --python $(VENV)/bin/python requirements/airflow.lock
	$(UV) pip install -q --python $(VENV)/bin/python --no-deps -e .
	touch $@

# The ML runtime: the pinned TF 2.16 stack, from its own lock, plus this provider (editable).
$(STAMPS)/runtime: requirements/runtime.lock setup.cfg $(STAMPS)/venv
	test -x $(RUNTIME)/bin/python || $(UV) venv -q --python $(PYTHON) $(RUNTIME)
	$(UV) pip sync -q --python $(RUNTIME)/bin/python requirements/runtime.lock
	$(UV) pip install -q --python $(RUNTIME)/bin/python --no-deps -e .
	touch $@

# Debian packages the tests need: PostgreSQL, MariaDB and Redis servers, strace and headless Chromium.
$(STAMPS)/system: scripts/system-deps.sh | $(STAMPS)
	bash scripts/system-deps.sh
	touch $@

# Benchmarks only: the Airflow side plus dag-factory, the parse benchmark's contender. dag-factory registers an
# Airflow plugin, so it lives here and not in .venv, where every product Airflow process would import it.
$(STAMPS)/bench: requirements/airflow.lock requirements/bench.lock setup.cfg $(STAMPS)/venv
	test -x $(BENCH_VENV)/bin/python || $(UV) venv -q --python $(PYTHON) $(BENCH_VENV)
	$(UV) pip sync -q --python $(BENCH_VENV)/bin/python requirements/airflow.lock requirements/bench.lock
	$(UV) pip install -q --python $(BENCH_VENV)/bin/python --no-deps -e .
	touch $@

venv: $(STAMPS)/venv
runtime: $(STAMPS)/runtime
system: $(STAMPS)/system
bench-venv: $(STAMPS)/bench

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: venv runtime
	bash scripts/demo.sh

test: venv runtime system lint
	bash scripts/test.sh $(PYTEST_ARGS)

bench: venv runtime bench-venv
	bash scripts/bench.sh $(BENCH)

lock: venv
	$(UV) pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/airflow.in -o requirements/airflow.lock
	$(UV) pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/runtime.in -o requirements/runtime.lock
	$(UV) pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements/bench.in -c requirements/airflow.lock -o requirements/bench.lock

clean:
	rm -rf $(STAMPS) .airflow .test-artifacts build *.egg-info
