# `make run` and `make test` each create .venv and install the package when needed,
# so on a fresh machine each is a single command.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest workers for `make test` (0: one process). Test files go whole to a worker (--dist loadfile), so a
# module's fitted fixture is built once; the suite is mostly single-threaded numba compiles, so 2 workers on
# 2 cores roughly halve it.
TEST_WORKERS ?= 2

.PHONY: run test test-all bench clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bayes-retail run

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_data_check.py
	$(BIN)/python bench/bench_visit.py
	$(BIN)/python bench/bench_visit_recovery.py
	$(BIN)/python bench/bench_category.py
	$(BIN)/python bench/bench_category_recovery.py
	$(BIN)/python bench/bench_quantity.py
	$(BIN)/python bench/bench_quantity_recovery.py
	$(BIN)/python bench/bench_product_recovery.py

clean-cache: $(STAMP)
	rm -rf "$$($(BIN)/python -c 'from bayes_retail.data import default_cache_dir; print(default_cache_dir())')"
