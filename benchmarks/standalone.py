"""The standalone benchmarks as scenarios of the suite.

``bench_presence.py`` (presence on each layer), ``bench_publisher.py``
(``group_send`` from sync code: the publisher against ``async_to_sync``)
and ``bench_sse.py`` (Server-Sent Events against WebSockets) keep their own
command lines; the runner starts each as a subprocess with ``--json`` and
turns what it prints into cells, so they are measured the way their owners
measure them, in a process of their own:

- ``presence`` and ``publisher`` measure layers in-process: pinned to the
  server cores, as the layer scenarios are;
- ``sse`` starts its two servers itself (on the server cores) and drives
  them from the other cores.

Each is one job with its own alternation inside (the owner's rounds), so a
cell has a single slice holding the owner's figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.servers import AB_SOURCE_ENV, AB_SYSTEM, REPO_ROOT

__all__ = ["STANDALONE_SCENARIOS", "run_standalone"]

#: Scenario name -> what it needs: "redis" (skipped without a Redis) or "".
STANDALONE_SCENARIOS = {"presence": "redis", "publisher": "redis", "sse": ""}

#: bench_publisher's row names -> (system, call) in the cells.
PUBLISHER_SYSTEMS = {
    "achannels publisher": ("achannels", "Publisher"),
    "achannels async_to_sync": ("achannels", "async_to_sync"),
    "Channels async_to_sync": ("channels", "async_to_sync"),
}


class StandaloneError(RuntimeError):
    """A standalone benchmark failed; the message has its output."""


async def _run_json(
    argv: list[str], cores: set[int] | None, timeout: float, source: str | None
) -> Any:
    """Run ``argv`` (pinned to ``cores``, importing achannels from
    ``source`` first when given) and return the JSON it prints."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (source, str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
        preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise StandaloneError(f"{argv[0]}: no result within {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise StandaloneError(f"{argv[0]} exited {proc.returncode}: {tail[0]}")
    return json.loads(out)


def _cell(
    scenario: str, where: str, params: dict[str, Any], system: str, **kw: Any
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "where": where,
        "params": params,
        "system": system,
        "slices": [kw["slice"]] if "slice" in kw else [],
        "error": kw.get("error"),
    }


async def presence(
    sizes: Any, url: str, cores: set[int], source: str | None
) -> list[dict[str, Any]]:
    entries = int(sizes.presence_entries)
    argv = ["benchmarks/bench_presence.py", "--json"]
    argv += ["--entries", str(entries), "--redis", url]
    params = {"entries": entries}
    try:
        results = await _run_json(argv, cores, 1800, source)
    except StandaloneError as error:
        return [_cell("presence", "-", params, "achannels", error=str(error))]
    return [
        _cell("presence", layer, params, "achannels", slice=figures)
        for layer, figures in results.items()
    ]


async def publisher(
    sizes: Any, url: str | None, cores: set[int], source: str | None
) -> list[dict[str, Any]]:
    argv = ["benchmarks/bench_publisher.py", "--json"]
    argv += ["--seconds", str(sizes.publisher_seconds)]
    argv += ["--rounds", str(sizes.publisher_rounds)]
    # Without --redis the owner starts a private redis-server, so that the
    # connections it counts are its own only (the shared one has others').
    if url is not None:
        argv += ["--redis", url]
    try:
        rows = await _run_json(argv, cores, 1800, source)
    except StandaloneError as error:
        return [_cell("publisher", "redis", {}, "achannels", error=str(error))]
    cells = []
    for row in rows:
        system, call = PUBLISHER_SYSTEMS[row["system"]]
        figures = {k: v for k, v in row.items() if k not in ("system", "threads")}
        params = {"threads": row["threads"], "call": call}
        cells.append(_cell("publisher", "redis", params, system, slice=figures))
    return cells


async def sse(sizes: Any, source: str | None) -> list[dict[str, Any]]:
    params = {"clients": sizes.sse_clients, "messages": sizes.sse_messages}
    argv = ["-m", "benchmarks.bench_sse", "--json"]
    argv += ["--clients", str(sizes.sse_clients)]
    argv += ["--messages", str(sizes.sse_messages)]
    argv += ["--rounds", str(sizes.sse_rounds)]
    try:
        # It pins its servers and itself (benchmarks.servers.cpu_plan).
        results = await _run_json(argv, None, 1800, source)
    except StandaloneError as error:
        return [_cell("sse", "uvicorn", params, "achannels", error=str(error))]
    return [_cell("sse", "uvicorn", params, "achannels", slice=results)]


async def run_standalone(
    scenarios: Sequence[str],
    sizes: Any,
    systems: Sequence[str],
    server_cores: set[int],
    redis_note: str | None,
    redis: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """(cells, notes) of the standalone scenarios asked for. They measure
    achannels (and, in ``publisher``, Channels) from the tree under test:
    the ``--ab`` tree when only ``achannels-b`` is asked for."""
    source = (
        os.environ.get(AB_SOURCE_ENV)
        if AB_SYSTEM in systems and "achannels" not in systems
        else None
    )
    cells: list[dict[str, Any]] = []
    notes: list[str] = []
    for scenario in scenarios:
        if STANDALONE_SCENARIOS[scenario] == "redis" and redis_note:
            notes.append(f"{scenario} skipped: {redis_note}.")
            continue
        if scenario == "presence" and sizes.presence_entries:
            cells += await presence(sizes, redis, server_cores, source)
        elif scenario == "publisher" and sizes.publisher_rounds:
            private = shutil.which("redis-server") is not None
            cells += await publisher(
                sizes, None if private else redis, server_cores, source
            )
        elif scenario == "sse" and sizes.sse_clients:
            cells += await sse(sizes, source)
    return cells, notes
