"""The benchmark suite still runs: every scenario, tiny sizes, real servers.

``make bench`` is not part of ``make test``, so this is what notices when a
change breaks the suite: the runner starts real uvicorn processes for
achannels, the hand-written app and (where installed) Channels, drives them
with the load generator, runs the layer scenarios and writes the report.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import inprocess, report

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCENARIOS = ("memory", "echo", "connrate", "fanout")
# Several uvicorn processes sharing rooms through Redis (the suite's Redis).
CLUSTER_SCENARIOS = ("xfanout.rate", "xfanout.flat", "rooms")
CHANNELS_INSTALLED = all(
    importlib.util.find_spec(name) is not None
    for name in ("channels", "django", "channels_redis")
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.run", "--smoke",
            "--servers", "uvicorn,granian", "--out", str(out), "--no-charts",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=150,
        env={**os.environ, "ACHANNELS_BENCH_REDIS_URL": redis_url()},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    results["_page"] = (out / "README.md").read_text()
    results["_stdout"] = done.stdout
    return results


def redis_url() -> str:
    return os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def cells(
    results: dict[str, Any], scenario: str, where: str = "uvicorn"
) -> dict[str, dict[str, Any]]:
    return {
        c["system"]: c
        for c in results["cells"]
        if c["scenario"] == scenario and c["where"] == where
    }


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
@pytest.mark.parametrize("scenario", SERVER_SCENARIOS)
def test_smoke_run_measures_achannels_and_hand_written_app(
    smoke_run: dict[str, Any], scenario: str, server: str
) -> None:
    measured = cells(smoke_run, scenario, server)
    expected = {"achannels", "raw"} | ({"channels"} if CHANNELS_INSTALLED else set())
    assert set(measured) == expected
    for system, cell in measured.items():
        assert cell["error"] is None, (system, cell["error"])
        assert cell["slices"], system
        for piece in cell["slices"]:
            assert piece.get("errors", 0) == 0, (system, piece)
        if scenario == "memory":
            # Ten sockets may fit in pages the server already had.
            assert cell["slices"][0]["open"] == cell["params"]["connections"]
        else:
            assert (report.figure(cell) or 0) > 0, system


def test_smoke_run_broadcasts_to_every_idle_connection(
    smoke_run: dict[str, Any],
) -> None:
    # Channels' in-memory layer is quadratic in the members: left out.
    measured = cells(smoke_run, "scale")
    assert set(measured) == {"achannels", "raw"}
    for system, cell in measured.items():
        assert cell["error"] is None, (system, cell["error"])
        (piece,) = cell["slices"]
        assert piece["open"] == cell["params"]["connections"]
        assert piece["time_to_last_s"] and piece["errors"] == 0, (system, piece)
        assert (report.figure(cell) or 0) > 0, system
    assert "### Broadcast to every idle connection" in smoke_run["_page"]


@pytest.mark.parametrize("scenario", CLUSTER_SCENARIOS)
def test_smoke_run_shares_rooms_between_server_processes(
    smoke_run: dict[str, Any], scenario: str
) -> None:
    measured = cells(smoke_run, scenario, "redis-pubsub")
    expected = {"achannels", "raw"} | ({"channels"} if CHANNELS_INSTALLED else set())
    assert set(measured) == expected
    for system, cell in measured.items():
        assert cell["error"] is None, (system, cell["error"])
        assert cell["params"]["processes"] == 2
        assert cell["slices"], system
        if scenario == "rooms":
            # Every step delivered through the rooms of both processes. What
            # arrives after the load generator's one-second grace counts as
            # missing, which on a starved machine is lateness, not loss.
            assert all(p["deliveries"] > 0 for p in cell["slices"]), (system, cell)
        else:
            assert all(p["lost"] == 0 for p in cell["slices"]), (system, cell)
        assert (report.figure(cell) or 0) > 0, system


def test_smoke_run_counts_server_and_load_generator_cpu(
    smoke_run: dict[str, Any],
) -> None:
    for system, cell in cells(smoke_run, "echo").items():
        for piece in cell["slices"]:
            assert piece["server_cpu"] > 0, system
            assert piece["client_cpu"] > 0, system


def test_smoke_run_measures_layers_without_a_server(
    smoke_run: dict[str, Any],
) -> None:
    layer_cells = [c for c in smoke_run["cells"] if c["scenario"].startswith("layer.")]
    assert {c["scenario"] for c in layer_cells} >= {
        "layer.sendrecv",
        "layer.group_send",
        "layer.group_e2e",
    }
    for cell in layer_cells:
        assert cell["error"] is None, cell
        assert (report.figure(cell) or 0) > 0, cell


def test_smoke_run_prints_and_writes_the_tables(smoke_run: dict[str, Any]) -> None:
    for text in (smoke_run["_stdout"], smoke_run["_page"]):
        assert "### WebSocket echo" in text
        assert "### Idle memory" in text
        assert "### Cross-process broadcast, flat out" in text
        assert "### Many rooms" in text
        assert "achannels / hand-written" in text
    assert "## Targets" in smoke_run["_page"]
    assert smoke_run["machine"]["commit"]


def test_in_process_bench_runs_the_same_apps() -> None:
    # Each system in its own process: importing an app configures its layer.
    sizes = {
        "connections": 3,
        "messages": 30,
        "connects": 50,
        "members": 5,
        "broadcasts": 2,
        "idle": 20,
    }
    results = inprocess.run_all(["achannels", "raw"], sizes)
    for system, figures in results.items():
        assert all(value > 0 for value in figures.values()), (system, figures)
