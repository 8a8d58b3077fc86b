# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Exit 1 means "finished with exceptions", the normal outcome of the demo batch.
demo: $(STAMP)
	$(BIN)/recon capture sample_data/orders.csv --sandbox --yes; rc=$$?; \
	  if [ $$rc -gt 1 ]; then exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check recon tests bench
	$(BIN)/ruff format --check recon tests bench
	$(BIN)/mypy recon

test: lint
	$(BIN)/python -m pytest -q

# Speed and memory targets of the issues; figures go in docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python bench/bench_validate.py
	$(BIN)/python bench/bench_workbook.py
	$(BIN)/python bench/bench_capture.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
