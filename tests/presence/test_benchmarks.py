"""The presence and publisher benchmarks still run (tiny sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.redis import require_redis
from tests.support.servers import REPO_ROOT


def run(script: str, *args: str) -> object:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args, "--json"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.redis
def test_bench_presence_measures_every_layer() -> None:
    results = run("bench_presence.py", "--entries", "200", "--redis", require_redis())
    assert isinstance(results, dict)
    assert set(results) == {"in-memory", "redis core", "redis pub/sub"}
    assert all(figures["track_per_s"] > 0 for figures in results.values())


@pytest.mark.redis
def test_bench_publisher_measures_the_publisher() -> None:
    rows = run(
        "bench_publisher.py",
        "--seconds",
        "0.2",
        "--rounds",
        "1",
        "--redis",
        require_redis(),
    )
    assert isinstance(rows, list)
    systems = {row["system"] for row in rows}
    assert {"achannels publisher", "achannels async_to_sync"} <= systems
