"""Run the benchmark suite and report the ratios.

    python -m benchmarks.run --quick            # under a minute, prints the table
    python -m benchmarks.run --out docs/benchmarks   # the full run, with charts

Systems: ``achannels``, ``channels`` (Channels 4.3, when installed: the bench
environment has it, the project never depends on it) and ``raw``, the
hand-written ASGI app that sets the ceiling. All of them serve the same
routes (``benchmarks/apps``) on uvicorn and on hypercorn, pinned to half of
the cores; the load generator runs on the other half. Every scenario is
measured in slices that alternate between the systems (the order rotates
each round), so machine drift touches all of them alike; a cell's figure is
the median of its slices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from benchmarks import report
from benchmarks.apps.consumers import LAYER_ENV, PREFIX_ENV, REDIS_ENV
from benchmarks.layers import redis_url
from benchmarks.servers import (
    AB_SOURCE_ENV,
    AB_SYSTEM,
    REPO_ROOT,
    RunningServer,
    cpu_plan,
    start_servers,
)
from benchmarks.standalone import STANDALONE_SCENARIOS, run_standalone

__all__ = ["FULL", "QUICK", "SMOKE", "Sizes", "main", "override_sizes", "run_suite"]

SYSTEMS = ("achannels", "channels", "raw")
SERVERS = ("uvicorn", "hypercorn", "granian")
SCENARIOS = (
    "memory", "echo", "connrate", "fanout", "scale", "cluster", "rooms", "layers",
    *STANDALONE_SCENARIOS,
)  # fmt: skip
#: Scenarios on several server processes sharing Redis (not per server).
CLUSTER_SCENARIOS = ("cluster", "rooms")
#: The most sockets one process may hold here is its hard open-files limit
#: (20,000 on the reference machine, and raising it needs privileges); the
#: server and the load generator each keep this many for their own files.
FD_RESERVE = 100


@dataclass(frozen=True)
class Sizes:
    """How big and how long each scenario runs."""

    name: str
    slices: int  # alternating measurements per cell
    # Fresh server processes per system: the same code can run 25 % faster
    # or slower in one process than in the next (measured on hypercorn), so
    # the slices are spread over this many sets of processes.
    epochs: int = 1
    echo_clients: tuple[int, ...] = (1, 50, 500)
    echo_duration: float = 2.0
    connrate_concurrency: int = 16
    connrate_duration: float = 2.0
    fanout_clients: int = 1000
    fanout_broadcasts: int = 20
    idle_clients: int = 5000
    layer_duration: float = 2.0
    layer_others: int = 100_000
    # End to end, every member's receive scans all channels in Channels'
    # layer (~90 ms each at 100,000): fewer others keep a slice in seconds.
    e2e_others: int = 10_000
    layer_members: tuple[int, ...] = (100, 1000)
    # In-process and CPU-bound: fewer slices are enough.
    layer_slices: int = 5
    layer_pingpong: bool = True
    redis_kinds: tuple[str, ...] = ("redis", "redis-pubsub")
    redis_processes: int = 4
    redis_rounds: int = 30
    # Memory at scale: idle connections, then room members and the time to
    # broadcast to all of them (0: skipped); capped by the open-files limit.
    scale_clients: int = 20_000
    scale_broadcasts: int = 3
    # Several server processes sharing rooms through Redis.
    cluster_layers: tuple[str, ...] = ("redis", "redis-pubsub")
    cluster_processes: int = 2
    cluster_slices: int = 4
    xfanout_clients: int = 2000
    xfanout_rate: float = 1.0  # publications/s of the fixed-rate phase
    xfanout_rate_duration: float = 5.0
    xfanout_duration: float = 2.5
    xfanout_window: int = 4  # publications in flight when flat out
    rooms_clients: int = 5000
    room_size: int = 10
    rooms_duration: float = 2.0
    rooms_start_rate: float = 50.0  # room messages/s of the first step
    rooms_steps: int = 8
    rooms_p99_ms: float = 100.0
    setup_timeout: float = 300.0
    # The standalone benchmarks (benchmarks/standalone.py); 0: skipped.
    presence_entries: int = 10_000
    publisher_seconds: float = 2.0
    publisher_rounds: int = 3
    sse_clients: int = 1000
    sse_messages: int = 20
    sse_rounds: int = 9


# Many short slices rather than a few long ones: on a shared machine the
# pairing of neighbouring slices is what cancels drift.
FULL = Sizes(
    name="full",
    slices=9,
    epochs=3,
    echo_duration=1.2,
    connrate_duration=1.2,
    fanout_broadcasts=12,
    layer_duration=1.0,
    redis_rounds=20,
)
QUICK = Sizes(
    name="quick",
    slices=1,
    echo_duration=0.3,
    connrate_duration=0.4,
    fanout_clients=500,
    fanout_broadcasts=5,
    idle_clients=500,
    layer_duration=0.4,
    layer_others=10_000,
    e2e_others=1_000,
    layer_members=(1000,),
    layer_slices=1,
    layer_pingpong=False,
    redis_kinds=("redis",),
    redis_processes=2,
    redis_rounds=5,
    scale_clients=0,
    cluster_layers=("redis",),
    cluster_slices=1,
    xfanout_clients=200,
    xfanout_rate=4.0,
    xfanout_rate_duration=0.5,
    xfanout_duration=0.5,
    rooms_clients=500,
    rooms_duration=0.4,
    rooms_steps=2,
    setup_timeout=120.0,
    # Tens of seconds each even when tiny (servers, a private redis-server).
    presence_entries=0,
    publisher_rounds=0,
    sse_clients=0,
)
SMOKE = Sizes(
    name="smoke",
    slices=1,
    echo_clients=(1, 3),
    echo_duration=0.15,
    connrate_concurrency=2,
    connrate_duration=0.15,
    fanout_clients=5,
    fanout_broadcasts=2,
    idle_clients=10,
    layer_duration=0.05,
    layer_others=100,
    e2e_others=100,
    layer_members=(10,),
    layer_slices=1,
    layer_pingpong=False,
    redis_kinds=(),
    scale_clients=20,
    scale_broadcasts=1,
    cluster_layers=("redis-pubsub",),
    cluster_slices=1,
    xfanout_clients=6,
    xfanout_rate=20.0,
    xfanout_rate_duration=0.2,
    xfanout_duration=0.2,
    rooms_clients=20,
    room_size=5,
    rooms_duration=0.2,
    rooms_start_rate=50.0,
    rooms_steps=2,
    setup_timeout=60.0,
    presence_entries=0,
    publisher_rounds=0,
    sse_clients=0,
)


class Quiescent(Protocol):
    """A server (or group of them) that can wait until it is idle."""

    def quiesce(self) -> None: ...


class BenchError(RuntimeError):
    """A worker or server failed in a way that ends the run."""


@dataclass
class Cell:
    """One measured thing for one system: all its slices."""

    scenario: str
    where: str  # server name, or layer backend
    params: dict[str, Any]
    system: str
    slices: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class Worker:
    """A worker subprocess (load generator or layer runner) speaking the
    JSON-lines job protocol of ``benchmarks._jobs``."""

    def __init__(
        self, module: str, cores: set[int], name: str, source: str | None = None
    ) -> None:
        self.module = module
        self.cores = cores
        self.name = name
        self.source = source  # a source tree to import achannels from first
        self.proc: asyncio.subprocess.Process | None = None
        self.log = tempfile.TemporaryFile()

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (self.source, str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        cores = self.cores
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
            cwd=REPO_ROOT,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
            limit=64 * 1024 * 1024,  # results carry latency samples
        )

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(
                f"{self.name}: no answer within {timeout:.0f}s\n{self.stderr()}"
            ) from None
        if not line:
            raise BenchError(f"{self.name} exited:\n{self.stderr()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        """End a worker that stopped answering; ``close`` then reaps it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await self.send({"op": "exit"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.log.close()


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= max(1, len(items))
    return [*items[by:], *items[:by]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_cells(
    scenario: str,
    where: str,
    params: dict[str, Any],
    jobs: dict[str, dict[str, Any]],
    workers: dict[str, Worker],
    servers: Mapping[str, Quiescent],
    sizes: Sizes,
    slice_timeout: float,
    rotation: int = 0,
) -> list[Cell]:
    """Set up ``jobs`` (system -> job) on their workers, measure
    ``sizes.slices`` alternating slices (the order rotated by ``rotation``
    more each round), tear down; one ``Cell`` per system."""
    cells = {s: Cell(scenario, where, params, s) for s in jobs}

    async def set_up(system: str) -> None:
        await workers[system].send(jobs[system])
        answer = await workers[system].read(sizes.setup_timeout)
        if answer["phase"] != "ready":
            cells[system].error = answer.get("error", str(answer))

    await asyncio.gather(*(set_up(s) for s in jobs))
    live = [s for s in jobs if cells[s].error is None]
    for round_ in range(sizes.slices):
        for system in rotated(live, round_ + rotation):
            if cells[system].error is not None:
                continue
            if system in servers:
                await asyncio.to_thread(servers[system].quiesce)
            await workers[system].send({"go": True})
            answer = await workers[system].read(slice_timeout)
            if answer["phase"] == "result":
                cells[system].slices.append(answer)
            else:
                cells[system].error = answer.get("error", str(answer))
    for system in jobs:
        await workers[system].send({"stop": True})
        while True:
            answer = await workers[system].read(sizes.setup_timeout)
            if answer["phase"] == "idle":
                break
            if answer["phase"] == "error" and cells[system].error is None:
                cells[system].error = answer["error"]
    for cell in cells.values():
        status = f"error: {cell.error}" if cell.error else _summary(cell)
        log(f"  {scenario:9} {where:10} {_params(params):22} {cell.system:9} {status}")
    return list(cells.values())


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _summary(cell: Cell) -> str:
    rates = [s["count"] / s["wall"] for s in cell.slices if s.get("wall")]
    if not rates:
        return "-"
    rate = statistics.median(rates)
    return f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.2f}/s"


def scale_clients(sizes: Sizes) -> int:
    """``sizes.scale_clients``, or as many as the open-files limit lets one
    server process and the load generator hold."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return sizes.scale_clients
    return min(sizes.scale_clients, int(hard) - FD_RESERVE)


async def measure_memory(
    servers: dict[str, RunningServer],
    workers: dict[str, Worker],
    sizes: Sizes,
    scenario: str = "memory",
    clients: int | None = None,
) -> list[Cell]:
    """Server RSS per idle connection, one system at a time, on servers that
    have only been warmed up (so freed memory from earlier scenarios cannot
    hide the cost). ``scale``: as many connections as one process may hold,
    first idle echo connections (``memory`` cells), then room members, with
    the time to broadcast to all of them (``scale`` cells)."""
    cells = []
    count = sizes.idle_clients if clients is None else clients
    kinds = [("memory", "/echo/", 0)]
    if scenario == "scale":
        kinds.append(("scale", "/room/", sizes.scale_broadcasts))
    for system, srv in servers.items():
        for name, path, broadcasts in kinds:
            cell = Cell(name, srv.server, {"connections": count}, system)
            cells.append(cell)
            await _measure_idle(cell, srv, workers[system], sizes, path, broadcasts)
            per = cell.slices[0]["per_connection"] / 1024 if cell.slices else 0
            status = f"{per:,.1f} KiB/conn"
            if cell.slices and cell.slices[0].get("time_to_last_s"):
                # Its memory follows the idle run's: freed pages hide it.
                last = statistics.median(cell.slices[0]["time_to_last_s"])
                status = f"broadcast to all in {last * 1000:,.0f} ms"
            if cell.error:
                status = f"error: {cell.error}"
            log(f"  {name:9} {srv.server:10} {count:<22,} {system:9} {status}")
    return cells


async def _measure_idle(
    cell: Cell,
    srv: RunningServer,
    worker: Worker,
    sizes: Sizes,
    path: str,
    broadcasts: int,
) -> None:
    await asyncio.to_thread(srv.quiesce)
    before = srv.rss()
    job = {
        "op": "idle",
        "host": srv.host,
        "port": srv.port,
        "clients": cell.params["connections"],
        "path": path,
        "broadcasts": broadcasts,
        "server_pids": srv.pids,
    }
    await worker.send(job)
    answer = await worker.read(sizes.setup_timeout)
    if answer["phase"] == "ready":
        await asyncio.sleep(0.3)
        await asyncio.to_thread(srv.quiesce)
        after = srv.rss()
        opened = int(answer["open"])
        piece = {
            "rss_before": before,
            "rss_after": after,
            "open": opened,
            "per_connection": (after - before) / max(1, opened),
        }
        if broadcasts:
            await worker.send({"go": True})
            result = await worker.read(sizes.setup_timeout)
            if result["phase"] == "result":
                piece.update({k: v for k, v in result.items() if k != "phase"})
            else:
                cell.error = result.get("error", str(result))
        cell.slices.append(piece)
    else:
        cell.error = answer.get("error", str(answer))
    await worker.send({"stop": True})
    while (await worker.read(sizes.setup_timeout))["phase"] != "idle":
        pass


async def run_server_scenarios(
    server: str,
    systems: Sequence[str],
    scenarios: Sequence[str],
    sizes: Sizes,
    server_cores: set[int],
    client_cores: set[int],
) -> list[Cell]:
    """Every server scenario on ``server`` for ``systems``, interleaved, over
    ``sizes.epochs`` sets of fresh server processes."""
    cells: list[Cell] = []
    per_epoch = replace(sizes, slices=max(1, -(-sizes.slices // sizes.epochs)))
    for epoch in range(sizes.epochs):
        if sizes.epochs > 1:
            log(f" processes {epoch + 1}/{sizes.epochs}")
        cells += await _one_epoch(
            server, systems, [s for s in scenarios if s != "scale"],
            per_epoch, server_cores, client_cores,
            rotation=epoch * per_epoch.slices,
        )  # fmt: skip
    if "scale" in scenarios and sizes.scale_clients:
        # Fresh processes of their own: memory freed by the other scenarios
        # would hide the cost of the first thousands of connections. Channels'
        # in-memory layer scans every channel on every receive: tens of
        # thousands of its consumers take it minutes.
        log(" memory at scale, fresh processes")
        cells += await _one_epoch(
            server, [s for s in systems if s != "channels"], ["scale"],
            per_epoch, server_cores, client_cores, rotation=0,
        )  # fmt: skip
    return merge_cells(cells)


def merge_cells(cells: list[Cell]) -> list[Cell]:
    """One cell per (scenario, where, params, system), slices in order."""
    merged: dict[tuple[str, str, str, str], Cell] = {}
    for cell in cells:
        key = (cell.scenario, cell.where, json.dumps(cell.params), cell.system)
        if key not in merged:
            merged[key] = Cell(cell.scenario, cell.where, cell.params, cell.system)
        target = merged[key]
        target.slices += cell.slices
        target.error = target.error or cell.error
    return list(merged.values())


async def _one_epoch(
    server: str,
    systems: Sequence[str],
    scenarios: Sequence[str],
    sizes: Sizes,
    server_cores: set[int],
    client_cores: set[int],
    rotation: int,
) -> list[Cell]:
    cells: list[Cell] = []
    pairs = [(system, server) for system in systems]
    workers = {
        s: Worker("benchmarks.loadgen", client_cores, f"loadgen-{s}") for s in systems
    }
    with start_servers(pairs, server_cores) as running:
        servers = {srv.system: srv for srv in running}
        try:
            for worker in workers.values():
                await worker.start()
            common = {
                s: {"host": srv.host, "port": srv.port, "server_pids": srv.pids}
                for s, srv in servers.items()
            }
            await run_cells(
                "warm", server, {},
                {s: {"op": "warm", **common[s]} for s in systems},
                workers, servers, replace(sizes, slices=1), 60,
            )  # fmt: skip
            if "memory" in scenarios:
                cells += await measure_memory(servers, workers, sizes)
            if "scale" in scenarios:
                cells += await measure_memory(
                    servers, workers, sizes, "scale", scale_clients(sizes)
                )

            async def scenario(
                op: str, size: dict[str, int], timeout: float, **params: Any
            ) -> list[Cell]:
                """One load-generator job per system, measured in slices."""
                jobs = {s: {"op": op, **size, **params, **common[s]} for s in systems}
                return await run_cells(
                    op, server, size, jobs, workers, servers, sizes, timeout, rotation
                )

            if "echo" in scenarios:
                for clients in sizes.echo_clients:
                    cells += await scenario(
                        "echo", {"clients": clients}, sizes.echo_duration * 10 + 60,
                        duration=sizes.echo_duration,
                    )  # fmt: skip
            if "connrate" in scenarios:
                cells += await scenario(
                    "connrate", {"concurrency": sizes.connrate_concurrency},
                    sizes.connrate_duration * 10 + 60,
                    duration=sizes.connrate_duration,
                )  # fmt: skip
            if "fanout" in scenarios:
                cells += await scenario(
                    "fanout", {"clients": sizes.fanout_clients}, 300,
                    broadcasts=sizes.fanout_broadcasts,
                )  # fmt: skip
            for srv in running:
                srv.check_alive()
        finally:
            for worker in workers.values():
                await worker.close()
    return cells


class ServerGroup:
    """The processes of one system in a multi-process scenario."""

    def __init__(self, members: list[RunningServer]) -> None:
        self.members = members

    @property
    def pids(self) -> list[int]:
        return [pid for srv in self.members for pid in srv.pids]

    @property
    def targets(self) -> list[list[Any]]:
        return [[srv.host, srv.port] for srv in self.members]

    def quiesce(self, timeout: float = 5.0) -> None:
        for srv in self.members:
            srv.quiesce(timeout=timeout)

    def check_alive(self) -> None:
        for srv in self.members:
            srv.check_alive()


def cluster_systems(systems: Sequence[str], layer: str) -> list[str]:
    """Who runs on ``layer``: the hand-written app only over pub/sub (what
    it is written on), achannels-b wherever achannels runs."""
    return [s for s in systems if s != "raw" or layer == "redis-pubsub"]


async def run_cluster_scenarios(
    systems: Sequence[str],
    scenarios: Sequence[str],
    sizes: Sizes,
    server_cores: set[int],
    client_cores: set[int],
) -> list[Cell]:
    """Cross-process broadcast and many rooms: ``cluster_processes`` uvicorn
    processes per system, sharing rooms through each Redis layer."""
    cells: list[Cell] = []
    processes = sizes.cluster_processes
    params = {"processes": processes}
    for layer in sizes.cluster_layers:
        present = cluster_systems(systems, layer)
        log(f" {layer}, {processes} uvicorn processes per system:")
        layer_env = {
            s: {
                LAYER_ENV: layer,
                REDIS_ENV: redis_url(),
                PREFIX_ENV: f"bench{uuid.uuid4().hex[:10]}",
            }
            for s in present
        }
        workers = {
            s: Worker("benchmarks.loadgen", client_cores, f"loadgen-{s}")
            for s in present
        }
        with start_servers(
            [(s, "uvicorn") for s in present], server_cores,
            layer=layer, layer_env=layer_env, processes=processes,
        ) as running:  # fmt: skip
            groups = {
                s: ServerGroup([srv for srv in running if srv.system == s])
                for s in present
            }
            # Every system's processes share the server core: a slice waits
            # until all of them are idle (another system still working off
            # its backlog would slow this one down), not only its own.
            everyone = ServerGroup(list(running))
            idle = {s: everyone for s in present}
            try:
                for worker in workers.values():
                    await worker.start()
                # channels_redis's connection pool refuses more than a few
                # dozen group_add() calls at once ("Too many connections"):
                # fewer handshakes in flight, as joining is not measured.
                common = {
                    s: {
                        "targets": g.targets,
                        "server_pids": g.pids,
                        "connect_parallelism": 16,
                    }
                    for s, g in groups.items()
                }
                slices = replace(sizes, slices=sizes.cluster_slices)
                if "cluster" in scenarios:
                    size = {"clients": sizes.xfanout_clients, **params}
                    for mode in ("rate", "flat"):
                        job = {
                            "op": "xfanout",
                            "clients": sizes.xfanout_clients,
                            "mode": mode,
                            "rate": sizes.xfanout_rate,
                            "window": sizes.xfanout_window,
                            "duration": sizes.xfanout_rate_duration
                            if mode == "rate"
                            else sizes.xfanout_duration,
                        }
                        cells += await run_cells(
                            f"xfanout.{mode}", layer,
                            {**size, "rate": sizes.xfanout_rate} if mode == "rate"
                            else size,
                            {s: {**job, **common[s]} for s in present},
                            workers, idle, slices,
                            sizes.xfanout_rate_duration * 10 + 120,
                        )  # fmt: skip
                if "rooms" in scenarios:
                    cells += await sweep_rooms(
                        layer, present, workers, idle, common, sizes
                    )
                for group in groups.values():
                    group.check_alive()
                _log_server_output(cells, layer, groups)
            finally:
                for worker in workers.values():
                    await worker.close()
    return cells


def _log_server_output(
    cells: list[Cell], layer: str, groups: dict[str, ServerGroup]
) -> None:
    """A system that failed on ``layer``: show what its servers printed."""
    failed = {c.system for c in cells if c.where == layer and c.error}
    for system in failed:
        for srv in groups[system].members:
            log(f"  {srv.label} printed:\n{srv.output()[-3000:]}")


async def sweep_rooms(
    layer: str,
    systems: Sequence[str],
    workers: dict[str, Worker],
    groups: dict[str, ServerGroup],
    common: dict[str, dict[str, Any]],
    sizes: Sizes,
) -> list[Cell]:
    """Many rooms: raise each system's offered rate (doubling, then
    bisecting) until the p99 delivery latency passes ``rooms_p99_ms``; the
    systems take turns at every step. A cell's slices are its steps; its
    figure is the highest rate that kept the bound."""
    params = {
        "clients": sizes.rooms_clients,
        "room_size": sizes.room_size,
        "processes": sizes.cluster_processes,
    }
    cells = {s: Cell("rooms", layer, params, s) for s in systems}
    job = {
        "op": "rooms",
        "clients": sizes.rooms_clients,
        "room_size": sizes.room_size,
        "duration": sizes.rooms_duration,
    }
    for system in systems:
        await workers[system].send({**job, **common[system]})
    stuck: set[str] = set()
    for system in systems:
        try:
            answer = await workers[system].read(sizes.setup_timeout)
        except BenchError as error:
            # A system that cannot even set up (its rooms never delivered)
            # is a result, not the end of the run.
            cells[system].error = str(error).splitlines()[0]
            stuck.add(system)
            continue
        if answer["phase"] != "ready":
            cells[system].error = answer.get("error", str(answer))
    state = {
        s: {"rate": sizes.rooms_start_rate, "ok": 0.0, "bad": 0.0}
        for s in systems
        if cells[s].error is None
    }
    for step in range(sizes.rooms_steps):
        for system in rotated(list(state), step):
            st = state[system]
            # An overloaded step leaves a backlog: let it drain first.
            await asyncio.to_thread(groups[system].quiesce, 30.0)
            await workers[system].send({"go": True, "rate": st["rate"]})
            try:
                answer = await workers[system].read(sizes.rooms_duration * 10 + 60)
            except BenchError as error:
                cells[system].error = str(error).splitlines()[0]
                stuck.add(system)
                del state[system]
                continue
            if answer["phase"] != "result":
                cells[system].error = answer.get("error", str(answer))
                del state[system]
                continue
            kept = rooms_kept(answer, sizes)
            answer["kept"] = kept
            cells[system].slices.append(answer)
            if kept:
                st["ok"] = max(st["ok"], st["rate"])
            else:
                st["bad"] = st["rate"] if not st["bad"] else min(st["bad"], st["rate"])
            if st["bad"] and st["ok"]:
                st["rate"] = (st["ok"] * st["bad"]) ** 0.5
            elif st["bad"]:
                st["rate"] = st["bad"] / 2
            else:
                st["rate"] *= 2
    for system in systems:
        if system in stuck:
            workers[system].kill()
            continue
        await workers[system].send({"stop": True})
        while (await workers[system].read(sizes.setup_timeout))["phase"] != "idle":
            pass
    for cell in cells.values():
        best = rooms_sustained(cell)
        status = f"error: {cell.error}" if cell.error else f"{best:,.0f} msg/s"
        log(f"  rooms     {layer:10} {_params(params):22} {cell.system:9} {status}")
    return list(cells.values())


def rooms_kept(piece: dict[str, Any], sizes: Sizes) -> bool:
    """Whether a rooms step kept the latency bound (the p99 counts what
    never arrived as infinitely late)."""
    return bool(piece["count"] and piece["p99_ms"] <= sizes.rooms_p99_ms)


def rooms_sustained(cell: Cell) -> float:
    return max(
        (p["count"] / p["wall"] for p in cell.slices if p.get("kept")), default=0.0
    )


def redis_available() -> str | None:
    """None when a Redis server answers PING, else why not."""
    url = urllib.parse.urlparse(redis_url())
    try:
        with socket.create_connection(
            (url.hostname or "127.0.0.1", url.port or 6379), 1.0
        ) as sock:
            sock.sendall(b"PING\r\n")
            sock.settimeout(1.0)
            if not sock.recv(64).startswith(b"+PONG"):
                return f"{redis_url()} did not answer PING"
    except OSError as exc:
        return f"no Redis at {redis_url()}: {exc}"
    return None


def layer_plan(
    sizes: Sizes, redis_note: str | None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(backend, op, params) for every layer cell."""
    plan: list[tuple[str, str, dict[str, Any]]] = [("memory", "sendrecv", {})]
    if sizes.layer_pingpong:
        plan.append(("memory", "pingpong", {}))
    for members in sizes.layer_members:
        plan.append(
            ("memory", "group_send", {"members": members, "others": sizes.layer_others})
        )
    for members in sizes.layer_members:
        plan.append(
            ("memory", "group_e2e", {"members": members, "others": sizes.e2e_others})
        )
    if redis_note is None:
        for kind in sizes.redis_kinds:
            plan.append((kind, "sendrecv", {}))
            for members in sizes.layer_members:
                plan.append(
                    (
                        kind,
                        "group_e2e",
                        {
                            "members": members,
                            "processes": sizes.redis_processes,
                            "rounds": sizes.redis_rounds,
                        },
                    )
                )
    return plan


async def run_layer_scenarios(
    systems: Sequence[str], sizes: Sizes, cores: set[int], redis_note: str | None
) -> list[Cell]:
    systems = [s for s in systems if s != "raw"]
    workers = {
        s: Worker(
            "benchmarks.layers",
            cores,
            f"layers-{s}",
            os.environ[AB_SOURCE_ENV] if s == AB_SYSTEM else None,
        )
        for s in systems
    }
    cells: list[Cell] = []
    try:
        for worker in workers.values():
            await worker.start()
        for backend, op, params in layer_plan(sizes, redis_note):
            jobs = {
                s: {
                    "system": "achannels" if s == AB_SYSTEM else s,
                    "backend": backend,
                    "op": op,
                    "duration": sizes.layer_duration,
                    **params,
                }
                for s in systems
            }
            cells += await run_cells(
                f"layer.{op}",
                backend,
                params,
                jobs,
                workers,
                {},
                replace(sizes, slices=min(sizes.slices, sizes.layer_slices)),
                1800,
            )
    finally:
        for worker in workers.values():
            await worker.close()
    return cells


async def run_suite(
    sizes: Sizes,
    systems: Sequence[str] = SYSTEMS,
    servers: Sequence[str] = SERVERS,
    scenarios: Sequence[str] = SCENARIOS,
) -> dict[str, Any]:
    """Run everything asked for; return the results document (see
    ``benchmarks.report``). Systems whose software is missing are skipped
    with a note."""
    notes: list[str] = []
    systems = list(systems)
    if "channels" in systems and not channels_installed():
        systems.remove("channels")
        notes.append(
            "Channels is not installed here, so it was skipped: build the bench "
            "environment with benchmarks/setup.sh."
        )
    servers = list(servers)
    for server in [s for s in servers if importlib.util.find_spec(s) is None]:
        servers.remove(server)
        notes.append(
            f"{server} is not installed here, so it was skipped: build the bench "
            "environment with benchmarks/setup.sh."
        )
    server_cores, client_cores = cpu_plan()
    notes += _scenario_notes(sizes, servers, scenarios)
    if server_cores == client_cores:
        notes.append("Only one core available: server and load generator share it.")
    with _pinned(client_cores):
        started = time.time()
        machine = report.machine_info(server_cores, client_cores)
        cells: list[Cell] = []
        server_scenarios = [
            s
            for s in scenarios
            if s != "layers"
            and s not in CLUSTER_SCENARIOS
            and s not in STANDALONE_SCENARIOS
        ]
        if server_scenarios:
            for server in servers:
                log(f"{server}:")
                cells += await run_server_scenarios(
                    server, systems, server_scenarios, sizes, server_cores,
                    client_cores,
                )  # fmt: skip
        cluster = [s for s in scenarios if s in CLUSTER_SCENARIOS]
        if cluster and sizes.cluster_layers:
            note = redis_available()
            if note:
                notes.append(f"Multi-process scenarios skipped: {note}.")
            else:
                log("several processes, Redis:")
                try:
                    cells += await run_cluster_scenarios(
                        systems, cluster, sizes, server_cores, client_cores
                    )
                except BenchError as error:
                    # Keep what the rest of the run measured.
                    first = str(error).splitlines()[0]
                    notes.append(f"Multi-process scenarios stopped: {first}.")
                    log(f"  multi-process scenarios stopped: {first}")
        if "layers" in scenarios:
            redis_note = redis_available() if sizes.redis_kinds else None
            if redis_note:
                notes.append(f"Redis layers skipped: {redis_note}.")
            log("layers:")
            cells += await run_layer_scenarios(systems, sizes, server_cores, redis_note)
        standalone = [s for s in scenarios if s in STANDALONE_SCENARIOS]
        if standalone:
            log("standalone benchmarks:")
            found, missing = await run_standalone(
                standalone, sizes, systems, server_cores,
                redis_available(), redis_url(),
            )  # fmt: skip
            notes += missing
            for piece in found:
                cell = Cell(**piece)
                cells.append(cell)
                status = f"error: {cell.error}" if cell.error else "done"
                log(f"  {cell.scenario:9} {cell.where:13} {_params(cell.params):22} "
                    f"{cell.system:9} {status}")  # fmt: skip
        machine["load_average_after"] = os.getloadavg()
    return {
        "sizes": asdict(sizes),
        "machine": machine,
        "started": started,
        "seconds": time.time() - started,
        "systems": systems,
        "servers": list(servers),
        "notes": notes,
        "cells": [asdict(cell) for cell in cells],
    }


def _scenario_notes(
    sizes: Sizes, servers: Sequence[str], scenarios: Sequence[str]
) -> list[str]:
    """What the reader of the results must know about how they were made."""
    notes = []
    if "scale" in scenarios and sizes.scale_clients:
        count = scale_clients(sizes)
        if count < sizes.scale_clients:
            notes.append(
                f"Memory at scale: {count:,} connections, not "
                f"{sizes.scale_clients:,}: the open-files hard limit of a process "
                f"here is {count + FD_RESERVE:,} (raising it needs privileges), "
                "and the server and the load generator each hold one socket "
                "per connection."
            )
        notes.append(
            "Memory at scale and the broadcast to every idle connection run "
            "achannels and the hand-written app only: Channels' in-memory layer "
            "scans every channel on each receive, so tens of thousands of its "
            "consumers take minutes to connect and to broadcast to."
        )
    if "granian" in servers:
        notes.append(
            "granian runs its Rust I/O thread and its Python thread on the one "
            "server core; the time they wait for each other shows as 'waited "
            "for CPU'."
        )
    if any(s in scenarios for s in CLUSTER_SCENARIOS) and sizes.cluster_layers:
        notes.append(
            f"Multi-process scenarios: the {sizes.cluster_processes} uvicorn "
            "processes of a system share the one server core (so they wait for "
            "each other: the machine is the limit there, not the framework), and "
            "the Redis server, shared with the machine's other users, is not "
            "pinned."
        )
        if "redis" in sizes.cluster_layers:
            notes.append(
                "Multi-process scenarios: Channels' core layer (channels_redis "
                "4.3) runs with redis-py 5's connection defaults (no read or "
                "connect timeout, no pool bound; `CHANNELS_REDIS_HOST` in "
                "benchmarks/apps/consumers.py): on redis-py 8's, its idle "
                "receiver times out in the middle of its 5 s BZPOPMIN and the "
                "consumer dies, and mass disconnects fail their group_discard."
            )
    return notes


def channels_installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("channels", "django", "channels_redis")
    )


@contextlib.contextmanager
def _pinned(cores: set[int]) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def override_sizes(sizes: Sizes, settings: Sequence[str]) -> Sizes:
    """``sizes`` with each ``FIELD=VALUE`` of ``settings`` applied, the value
    parsed as the field's default is typed (a tuple from comma-separated
    items); ``SystemExit`` for an unknown field."""
    changes: dict[str, Any] = {}
    for setting in settings:
        name, _, text = setting.partition("=")
        if name not in Sizes.__dataclass_fields__ or name == "name":
            raise SystemExit(f"--size {setting}: no such size field {name!r}")
        current = getattr(sizes, name)
        if isinstance(current, tuple):
            item = type(current[0]) if current else str
            changes[name] = tuple(item(v) for v in text.split(",") if v)
        elif isinstance(current, bool):
            changes[name] = text.lower() in ("1", "true", "yes")
        else:
            changes[name] = type(current)(text)
    return replace(sizes, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="under a minute")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes (tests)")
    parser.add_argument("--slices", type=int, help="alternating slices per cell")
    parser.add_argument(
        "--duration", type=float, help="seconds per echo/connrate/layer slice"
    )
    parser.add_argument(
        "--epochs", type=int, help="fresh sets of server processes per server"
    )
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one field of the mode's Sizes (repeatable), e.g. "
        "--size xfanout_clients=500 --size cluster_layers=redis",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--out",
        type=Path,
        help="write results.json, README.md and charts here "
        "(default: benchmarks/results/ for --quick; nothing for --smoke)",
    )
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument(
        "--ab",
        type=Path,
        metavar="SRC",
        help="also run achannels from the source tree SRC (the directory "
        "holding the achannels package) as system achannels-b, interleaved "
        "with the rest: an A/B test of a change",
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.slices:
        sizes = replace(sizes, slices=args.slices)
    if args.epochs:
        sizes = replace(sizes, epochs=args.epochs)
    if args.duration:
        sizes = replace(
            sizes,
            echo_duration=args.duration,
            connrate_duration=args.duration,
            layer_duration=args.duration,
        )
    sizes = override_sizes(sizes, args.size)
    out = args.out
    if out is None and not args.smoke:
        out = REPO_ROOT / "benchmarks" / "results" / sizes.name
    systems = args.systems.split(",")
    if args.ab:
        os.environ[AB_SOURCE_ENV] = str(args.ab.resolve())
        systems.insert(
            systems.index("achannels") + 1 if "achannels" in systems else 0, AB_SYSTEM
        )
    results = asyncio.run(
        run_suite(
            sizes,
            systems=systems,
            servers=args.servers.split(","),
            scenarios=args.scenarios.split(","),
        )
    )
    results["command"] = "benchmarks/.venv/bin/python -m benchmarks.run " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    table = report.markdown(results)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report.compact(results), indent=1))
        charts = [] if args.no_charts else report.charts(results, out)
        (out / "README.md").write_text(report.document(results, charts))
        log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
