# Everyday commands. Each target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What the demos need, without the dev tools: `make run` on a fresh clone.
RUN_STAMP := $(VENV)/.installed-run
PYTEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 8000
CHAT := examples/chat
REDIS_URL ?= redis://127.0.0.1:6379/0

define CHECK_PORT
import socket, sys
host, port, command = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind((host, port))
except OSError as exc:
    sys.exit(f"Cannot serve on {host}:{port}: {exc.strerror} (another server still "
             f"running?). Stop it, or choose another port: {command} PORT={port + 1}")
endef
export CHECK_PORT

.PHONY: help venv check-port run run-echo run-cluster test test-fast soak lint fmt typecheck bench bench-full clean

help:
	@echo "make run        serve the chat demo on http://$(HOST):$(PORT)/ (PORT=8001 for another port)"
	@echo "make run-cluster  the chat demo on 2 uvicorn workers sharing rooms via Redis"
	@echo "make run-echo   serve the minimal echo example"
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

# A dev install has all of it; otherwise install the demos' extras only.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; else \
	  $(BIN)/python -m pip install --quiet -e ".[django,redis,server]"; fi
	touch $(RUN_STAMP)

# Fails fast, before anything is installed, with the way out.
check-port:
	@$(PYTHON) -c "$$CHECK_PORT" "$(HOST)" "$(PORT)" "make $(or $(filter run%,$(MAKECMDGOALS)),run)"

run: check-port $(RUN_STAMP)
	cd $(CHAT) && $(abspath $(BIN))/python manage.py migrate --noinput -v 0
	@echo "achannels chat demo: open http://$(HOST):$(PORT)/ (in-memory layer; Ctrl-C stops it)"
	cd $(CHAT) && REDIS_URL= $(abspath $(BIN))/uvicorn chat_project.asgi:application --host $(HOST) --port $(PORT)

run-cluster: check-port $(RUN_STAMP)
	@$(BIN)/python -c "import redis, sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()" "$(REDIS_URL)" \
	  || { echo "make run-cluster needs a Redis server at $(REDIS_URL) (set REDIS_URL=...)"; exit 1; }
	cd $(CHAT) && $(abspath $(BIN))/python manage.py migrate --noinput -v 0
	@echo "achannels chat demo: open http://$(HOST):$(PORT)/ (2 uvicorn workers sharing rooms through $(REDIS_URL))"
	cd $(CHAT) && REDIS_URL=$(REDIS_URL) $(abspath $(BIN))/uvicorn chat_project.asgi:application --host $(HOST) --port $(PORT) --workers 2

run-echo: check-port $(RUN_STAMP)
	@echo "achannels echo example: open http://$(HOST):$(PORT)/"
	$(BIN)/uvicorn --app-dir examples/echo app:application --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks harness
	$(BIN)/ruff format --check src tests examples benchmarks harness

fmt: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks harness
	$(BIN)/ruff check --fix src tests examples benchmarks harness

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not soak"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not soak" -x -q

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -v

# The benchmarks run in their own environment: Channels and channels_redis
# are installed there to compare against, never into achannels' dependencies.
bench:
	sh benchmarks/setup.sh
	benchmarks/.venv/bin/python -m benchmarks.run --quick

bench-full:
	sh benchmarks/setup.sh
	benchmarks/.venv/bin/python -m benchmarks.run --out docs/benchmarks

clean:
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache build dist
