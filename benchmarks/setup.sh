#!/bin/sh
# Build the benchmark environment: benchmarks/.venv with achannels (editable)
# and everything it is compared against. Channels lives only here, never in
# achannels' own dependencies. Idempotent: re-running only refreshes.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=benchmarks/.venv
STAMP="$VENV/.installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt benchmarks/requirements.txt ] && [ "$STAMP" -nt pyproject.toml ]; then
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[redis]" -r benchmarks/requirements.txt
touch "$STAMP"
