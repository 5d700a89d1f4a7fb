# Everyday commands. Each target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv run run-echo run-cluster test test-fast soak lint fmt typecheck bench bench-full clean

help:
	@echo "make run        serve the demo app on http://$(HOST):$(PORT)/"
	@echo "make test       lint, type-check and run the whole test suite"
	@echo "make soak       the long soak sizes (run by .ci/run)"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make fmt        ruff format + ruff check --fix"
	@echo "make typecheck  mypy --strict src"
	@echo "make bench      the benchmark suite, quick mode"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@echo "achannels demo: open http://$(HOST):$(PORT)/"
	$(BIN)/uvicorn --app-dir examples/echo app:application --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

fmt: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not soak"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not soak" -x -q

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -v

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
