"""The load generator: a worker process driving one server at a time.

``python -m benchmarks.loadgen`` speaks the job protocol of
``benchmarks._jobs``: a job opens its connections, each ``go`` measures one
slice, ``stop`` closes them. A slice reports its wall time, its count, its
latencies, the worker's own CPU time and the server's (read with psutil at
the edges of the measured window, so both cover the same interval).

Jobs (``op``), all against ``host``/``port``:

- ``echo``: ``clients`` connections to ``/echo/``; per slice, each runs a
  closed loop (send, wait for the echo, send again) for ``warmup`` seconds
  uncounted and ``duration`` seconds counted;
- ``connrate``: per slice, ``concurrency`` loops connect to ``/echo/``,
  complete the handshake and the closing handshake, for ``duration``
  seconds;
- ``fanout``: ``clients`` connections to ``/room/``; per slice the first
  sends ``broadcasts`` frames, each once every member got the previous one;
  it reports the time until the last member has each;
- ``idle``: ``clients`` connections to ``/echo/`` held open until ``stop``;
- ``warm``: a few connections per route exchange a few messages per slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from benchmarks._jobs import Scenario, serve_forever
from benchmarks.wsclient import WSClient, connect, upgrade_request

__all__ = ["main", "setup"]

Job = dict[str, Any]

CONNECT_PARALLELISM = 128
CLOSE_TIMEOUT = 10.0
MAX_LATENCY_SAMPLES = 50_000


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (5,000 idle sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ServerMeter:
    """CPU time the server processes (all their threads, and children) have
    used, and time they spent runnable but waiting for a CPU.

    Read from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds; a shared
    machine steals the CPU from under a pinned server, and the wait shows
    how much); psutil's tick-granular times where that is missing.
    """

    def __init__(self, pids: list[int]) -> None:
        self._pids: list[int] = []
        self._procs: list[Any] = []
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            self._pids = list(pids)
            return
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                self._procs += [proc, *proc.children(recursive=True)]
        self._pids = [p.pid for p in self._procs]

    def read(self) -> tuple[float, float] | None:
        """(CPU seconds, runqueue wait seconds) so far, or None."""
        if not self._pids:
            return None
        cpu = wait = 0.0
        try:
            for pid in self._pids:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                        fields = f.read().split()
                    cpu += int(fields[0]) / 1e9
                    wait += int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return self._psutil()
        return cpu, wait

    def _psutil(self) -> tuple[float, float] | None:
        if not self._procs:
            return None
        total = 0.0
        for proc in self._procs:
            with contextlib.suppress(Exception):
                times = proc.cpu_times()
                total += times.user + times.system
        return total, 0.0


def _own_wait() -> float:
    """Seconds this process's threads spent runnable, waiting for a CPU."""
    total = 0.0
    with contextlib.suppress(OSError, IndexError, ValueError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1]) / 1e9
    return total


class Window:
    """A measured window: wall time, our CPU time and the server's."""

    def __init__(self, meter: ServerMeter) -> None:
        self.meter = meter
        self.t0 = self.cpu0 = 0.0
        self.server0: tuple[float, float] | None = None
        self.wait0 = 0.0

    def start(self) -> None:
        self.server0 = self.meter.read()
        self.wait0 = _own_wait()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        server1 = self.meter.read()
        result: dict[str, Any] = {
            "wall": wall,
            "client_cpu": cpu,
            "client_wait": _own_wait() - self.wait0,
            "server_cpu": None,
            "server_wait": None,
        }
        if server1 is not None and self.server0 is not None:
            result["server_cpu"] = server1[0] - self.server0[0]
            result["server_wait"] = server1[1] - self.server0[1]
        return result


def _sample(values: list[float]) -> list[int]:
    """Latencies in microseconds, thinned evenly to a bounded count."""
    step = max(1, len(values) // MAX_LATENCY_SAMPLES)
    return [int(v * 1e6) for v in values[::step]]


async def open_clients(
    job: Job,
    path: str,
    count: int,
    on_frame: Callable[[WSClient, int, bytes], None] | None,
) -> list[WSClient]:
    """Open ``count`` connections to ``path``, a bounded number at a time so
    the server's accept backlog never overflows (which would cost seconds of
    SYN retries and measure the kernel instead of the server)."""
    host, port = job["host"], job["port"]
    request = upgrade_request(host, port, path)
    gate = asyncio.Semaphore(CONNECT_PARALLELISM)
    clients: list[WSClient] = []

    async def one() -> None:
        async with gate:
            clients.append(await connect(host, port, path, on_frame, request=request))

    try:
        await asyncio.gather(*(one() for _ in range(count)))
    except BaseException:
        await close_clients(clients)
        raise
    return clients


async def close_clients(clients: list[WSClient]) -> None:
    """Close politely and wait for the server to drop each TCP connection
    (so its teardown is over before the next measurement); abort stragglers."""
    for client in clients:
        client.start_close()
    pending = [c.closed for c in clients if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
    for client in clients:
        if not client.closed.done():
            client.abort()


class _Connected:
    """A scenario holding open connections until ``aclose``."""

    clients: list[WSClient]

    def ready_info(self) -> dict[str, Any]:
        return {"open": sum(c.is_open for c in self.clients)}

    async def aclose(self) -> None:
        await close_clients(self.clients)


class Echo(_Connected):
    def __init__(self, job: Job) -> None:
        self.job = job
        self.payload = b"x" * int(job.get("payload", 16))
        self.duration = float(job["duration"])
        self.warmup = float(job.get("warmup", 0.1))
        self.meter = ServerMeter(job.get("server_pids", []))
        self.latencies: list[float] = []
        self.counting = self.running = False
        self.count = self.errors = 0
        self.outstanding: set[WSClient] = set()
        self.drained: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self.clients = await open_clients(
            self.job, "/echo/", int(self.job["clients"]), self.on_frame
        )

    def on_frame(self, client: WSClient, opcode: int, data: bytes) -> None:
        now = time.perf_counter()
        if data != self.payload:
            self.errors += 1
        if self.counting:
            self.latencies.append(now - client.mark)
            self.count += 1
        if self.running:
            client.mark = now
            client.send_text(data)
            return
        self.outstanding.discard(client)
        if not self.outstanding and self.drained and not self.drained.done():
            self.drained.set_result(None)

    async def slice(self) -> dict[str, Any]:
        self.latencies, self.count, self.errors = [], 0, 0
        self.drained = asyncio.get_running_loop().create_future()
        self.outstanding = set(self.clients)
        self.running = True
        start = time.perf_counter()
        for client in self.clients:
            client.mark = start
            client.send_text(self.payload)
        await asyncio.sleep(self.warmup)
        window = Window(self.meter)
        window.start()
        self.counting = True
        await asyncio.sleep(self.duration)
        self.counting = False
        result = window.stop()
        self.running = False
        # Let the round trips in flight finish so the sockets are quiet.
        await asyncio.wait_for(self.drained, CLOSE_TIMEOUT)
        result.update(
            count=self.count, errors=self.errors, latencies_us=_sample(self.latencies)
        )
        return result


class ConnRate:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.meter = ServerMeter(job.get("server_pids", []))
        self.request = upgrade_request(job["host"], job["port"], "/echo/")

    def ready_info(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        pass

    async def slice(self) -> dict[str, Any]:
        host, port = self.job["host"], self.job["port"]
        duration = float(self.job["duration"])
        warmup = float(self.job.get("warmup", 0.1))
        latencies: list[float] = []
        state = {"counting": False, "count": 0, "errors": 0}
        perf = time.perf_counter
        stop_at = perf() + warmup + duration

        async def cycle() -> None:
            while perf() < stop_at:
                t0 = perf()
                try:
                    client = await connect(host, port, "/echo/", request=self.request)
                    client.start_close()
                    # The server closes TCP after the closing handshake (RFC
                    # 6455 7.1.1), so TIME_WAIT lands on its side.
                    await asyncio.wait_for(client.closed, CLOSE_TIMEOUT)
                except (OSError, asyncio.TimeoutError) as exc:
                    state["errors"] += 1
                    if state["errors"] > 100:
                        raise RuntimeError("too many failed connections") from exc
                    continue
                if state["counting"]:
                    latencies.append(perf() - t0)
                    state["count"] += 1

        window = Window(self.meter)
        tasks = [
            asyncio.ensure_future(cycle()) for _ in range(int(self.job["concurrency"]))
        ]
        try:
            await asyncio.sleep(warmup)
            window.start()
            state["counting"] = True
            await asyncio.sleep(duration)
            state["counting"] = False
            result = window.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), CLOSE_TIMEOUT + 5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        result.update(
            count=state["count"],
            errors=state["errors"],
            latencies_us=_sample(latencies),
        )
        return result


class Fanout(_Connected):
    def __init__(self, job: Job) -> None:
        self.job = job
        self.size = int(job["clients"])
        self.meter = ServerMeter(job.get("server_pids", []))
        self.expected = b""
        self.got = self.errors = 0
        self.t0 = 0.0
        self.all_in: asyncio.Future[None] | None = None
        self.delivery: list[float] = []

    async def open(self) -> None:
        self.clients = await open_clients(self.job, "/room/", self.size, self.on_frame)

    def on_frame(self, client: WSClient, opcode: int, data: bytes) -> None:
        if data != self.expected:
            self.errors += 1
            return
        self.delivery.append(time.perf_counter() - self.t0)
        self.got += 1
        if self.got == self.size and self.all_in and not self.all_in.done():
            self.all_in.set_result(None)

    async def slice(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        timeout = float(self.job.get("timeout", 60.0))
        self.delivery, self.errors = [], 0
        last: list[float] = []
        window = Window(self.meter)
        window.start()
        for n in range(int(self.job["broadcasts"])):
            self.expected = f"broadcast-{n}".encode()
            self.got = 0
            self.all_in = loop.create_future()
            self.t0 = time.perf_counter()
            self.clients[0].send_text(self.expected)
            await asyncio.wait_for(self.all_in, timeout)
            last.append(time.perf_counter() - self.t0)
        result = window.stop()
        result.update(
            count=self.size * len(last),
            errors=self.errors,
            time_to_last_s=last,
            latencies_us=_sample(self.delivery),
        )
        return result


class Idle(_Connected):
    def __init__(self, job: Job) -> None:
        self.job = job

    async def open(self) -> None:
        self.clients = await open_clients(
            self.job, "/echo/", int(self.job["clients"]), None
        )

    async def slice(self) -> dict[str, Any]:
        return self.ready_info()


class Warm(_Connected):
    """A little of every route, so lazily imported code and first-use caches
    are loaded before anything is measured."""

    EXPECTED = 4 + 4 * 4  # 4 echoes, and 4 broadcasts reaching 4 members each

    def __init__(self, job: Job) -> None:
        self.job = job
        self.got = 0
        self.all_in: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self.clients = await open_clients(self.job, "/echo/", 4, self.on_frame)
        self.clients += await open_clients(self.job, "/room/", 4, self.on_frame)

    def on_frame(self, client: WSClient, opcode: int, data: bytes) -> None:
        self.got += 1
        if self.got == self.EXPECTED and self.all_in and not self.all_in.done():
            self.all_in.set_result(None)

    async def slice(self) -> dict[str, Any]:
        for _ in range(int(self.job.get("rounds", 20))):
            self.got = 0
            self.all_in = asyncio.get_running_loop().create_future()
            for client in self.clients:
                client.send_text(b"warm")
            await asyncio.wait_for(self.all_in, CLOSE_TIMEOUT)
        return {}


async def setup(job: Job) -> Scenario:
    """Set up the scenario ``job["op"]`` names (see the module docstring)."""
    op = job["op"]
    if op == "connrate":
        return ConnRate(job)
    scenario: Echo | Fanout | Idle | Warm
    if op == "echo":
        scenario = Echo(job)
    elif op == "fanout":
        scenario = Fanout(job)
    elif op == "idle":
        scenario = Idle(job)
    elif op == "warm":
        scenario = Warm(job)
    else:
        raise ValueError(f"unknown load job {op!r}")
    await scenario.open()
    return scenario


def main() -> None:
    """Serve load jobs from stdin until told to stop."""
    raise_fd_limit()
    serve_forever(setup)


if __name__ == "__main__":
    main()
