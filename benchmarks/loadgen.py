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
- ``idle``: ``clients`` connections to ``path`` (``/echo/``) held open
  until ``stop``; a slice with ``broadcasts`` (members of ``/room/``) has
  the first send that many frames, each once every member got the
  previous one, as in ``fanout``;
- ``warm``: a few connections per route exchange a few messages per slice;
- ``xfanout``: ``clients`` members of ``/room/`` spread evenly over
  ``targets`` (several server processes sharing the room through Redis);
  the first publishes, in ``mode`` ``rate`` one frame every 1/``rate``
  seconds for ``duration`` seconds, in ``flat`` as fast as the room
  delivers (``window`` frames in flight): deliveries/s and, per frame, the
  time from publishing it until the last member has it;
- ``rooms``: ``clients`` connections spread over ``targets``, in rooms of
  ``room_size`` (``/rooms/<name>/``), every client sending in turn so that
  the room messages total the slice's offered ``rate`` (set per ``go``):
  per delivery the time from the send, and how many never arrived.

Connections go to ``host``/``port`` or, round robin, to each of
``targets``; with ``sources`` they are bound, round robin, to those local
addresses (each loopback address has its own ephemeral ports).
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
    """Lift the soft open-files limit to the hard one (20,000 idle sockets
    need it; the hard limit is as far as an unprivileged process goes)."""
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
    path: str | Callable[[int], str],
    count: int,
    on_frame: Callable[[WSClient, int, bytes], None] | None,
) -> list[WSClient]:
    """Open ``count`` connections to ``path`` (or ``path(i)`` for the i-th),
    a bounded number at a time so the server's accept backlog never
    overflows (which would cost seconds of SYN retries and measure the
    kernel instead of the server). Client i goes to ``job["targets"][i %
    len]`` (else ``host``/``port``), bound to ``job["sources"][i % len]``
    when given; the list comes back in that order. ``connect_parallelism``
    bounds the handshakes in flight."""
    targets = [tuple(t) for t in job.get("targets") or [(job["host"], job["port"])]]
    sources = list(job.get("sources") or [])
    paths = path if callable(path) else (lambda i: path)
    requests: dict[tuple[Any, ...], bytes] = {}
    gate = asyncio.Semaphore(int(job.get("connect_parallelism", CONNECT_PARALLELISM)))
    clients: list[WSClient | None] = [None] * count

    async def one(i: int) -> None:
        host, port = targets[i % len(targets)]
        where = paths(i)
        key = (host, port, where)
        if key not in requests:
            requests[key] = upgrade_request(host, port, where)
        local = (sources[i % len(sources)], 0) if sources else None
        async with gate:
            clients[i] = await connect(
                host, port, where, on_frame, request=requests[key], local_addr=local
            )

    try:
        await asyncio.gather(*(one(i) for i in range(count)))
    except BaseException:
        await close_clients([c for c in clients if c is not None])
        raise
    return [c for c in clients if c is not None]


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
        path = str(self.job.get("path", "/room/"))
        self.clients = await open_clients(self.job, path, self.size, self.on_frame)

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


class Idle(Fanout):
    """Idle connections; when they are room members, a slice broadcasts
    to all of them as ``Fanout`` does."""

    def __init__(self, job: Job) -> None:
        super().__init__({"path": "/echo/", "broadcasts": 0, **job})

    async def slice(self) -> dict[str, Any]:
        if not int(self.job["broadcasts"]):
            return self.ready_info()
        return await super().slice()


def _p99_with_missing(latencies: list[float], missing: int) -> float:
    """p99 in µs over the deliveries expected, the missing ones as infinitely
    late."""
    total = len(latencies) + missing
    if not total:
        return 0.0
    index = min(total - 1, round(0.99 * (total - 1)))
    if index >= len(latencies):
        return float("inf")
    return 1e6 * sorted(latencies)[index]


class CrossFanout(_Connected):
    """One room over several server processes: the first member publishes,
    each frame carries its number (``p<n>``); per frame the time from its
    publication until the last member has it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.size = int(job["clients"])
        self.meter = ServerMeter(job.get("server_pids", []))
        self.mode = str(job.get("mode", "flat"))
        self.rate = float(job.get("rate", 1.0))
        self.window = int(job.get("window", 4))
        self.duration = float(job["duration"])
        self.timeout = float(job.get("timeout", 10.0))
        self.number = 0
        self.sent: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.latencies: list[float] = []
        self.deliveries = self.late = 0
        self.completed: asyncio.Queue[int] = asyncio.Queue()

    async def open(self) -> None:
        self.clients = await open_clients(self.job, "/room/", self.size, self.on_frame)
        await self.sync()

    def on_frame(self, client: WSClient, opcode: int, data: bytes) -> None:
        now = time.perf_counter()
        try:
            n = int(data[1:])
        except ValueError:
            self.late += 1
            return
        count = self.counts.get(n)
        if count is None:  # given up on, or from an earlier slice
            self.late += 1
            return
        self.deliveries += 1
        count += 1
        if count < self.size:
            self.counts[n] = count
            return
        del self.counts[n]
        self.latencies.append(now - self.sent.pop(n))
        self.completed.put_nowait(n)

    def publish(self) -> int:
        n = self.number
        self.number += 1
        self.counts[n] = 0
        self.sent[n] = time.perf_counter()
        self.clients[0].send_text(b"p%d" % n)
        return n

    def give_up(self) -> int:
        """Forget the frames still in flight; how many there were."""
        lost = len(self.counts)
        self.counts.clear()
        self.sent.clear()
        while not self.completed.empty():
            self.completed.get_nowait()
        return lost

    async def sync(self) -> None:
        """Publish until one frame reaches every member: every process has
        joined the room (a pub/sub subscription may lag the accept)."""
        for _ in range(30):
            self.publish()
            try:
                await asyncio.wait_for(self.completed.get(), 2.0)
                break
            except asyncio.TimeoutError:
                continue
        else:
            raise RuntimeError("no broadcast reached every member")
        await asyncio.sleep(0.2)
        self.give_up()

    async def slice(self) -> dict[str, Any]:
        self.latencies, self.deliveries, self.late = [], 0, 0
        perf = time.perf_counter
        window = Window(self.meter)
        window.start()
        start = perf()
        end = start + self.duration
        lost = 0
        if self.mode == "rate":
            interval = 1.0 / self.rate
            k = 0
            while start + k * interval < end:
                await asyncio.sleep(max(0.0, start + k * interval - perf()))
                self.publish()
                k += 1
            await asyncio.sleep(max(0.0, end - perf()))
        else:
            for _ in range(self.window):
                self.publish()
            while perf() < end:
                try:
                    await asyncio.wait_for(self.completed.get(), self.timeout)
                except asyncio.TimeoutError:
                    oldest = min(self.counts)
                    del self.counts[oldest]
                    del self.sent[oldest]
                    lost += 1
                self.publish()
        delivered = self.deliveries
        result = window.stop()
        # What is still in flight gets its chance to finish (its latency
        # counts), but not its deliveries: the rate is the window's.
        deadline = perf() + self.timeout
        while self.counts and perf() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.completed.get(), deadline - perf())
        # How far each lost frame got: a member that never gets anything
        # (its consumer died) and a slow layer look different here.
        reached = sorted(self.counts.values())
        lost += self.give_up()
        result.update(
            timeout=self.timeout,
            reached=reached,
            closed=sum(not c.is_open for c in self.clients),
            publisher_open=self.clients[0].is_open,
            count=delivered,
            errors=0,
            messages=len(self.latencies),
            lost=lost,
            late=self.late,
            latencies_us=_sample(self.latencies),
        )
        return result


class ManyRooms(_Connected):
    """Rooms of ``room_size`` over several server processes, every client
    sending in turn at the offered rate; per delivery the time from the
    send."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.size = int(job["clients"])
        self.room_size = int(job.get("room_size", 10))
        self.meter = ServerMeter(job.get("server_pids", []))
        self.duration = float(job["duration"])
        self.warmup = float(job.get("warmup", 0.3))
        self.rate = float(job.get("rate", 100.0))
        self.number = 0
        self.sent: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.latencies: list[float] = []
        self.counting = False
        self.deliveries = 0
        self.arrived = asyncio.Event()

    def configure(self, options: dict[str, Any]) -> None:
        self.rate = float(options.get("rate", self.rate))

    async def open(self) -> None:
        rooms = max(1, self.size // self.room_size)
        self.clients = await open_clients(
            self.job, lambda i: f"/rooms/r{i % rooms}/", self.size, self.on_frame
        )
        # One message per room until each reached all its members: every
        # room has been joined on every process, and nothing is left queued.
        loop = asyncio.get_running_loop()
        for _ in range(3):
            pending = []
            for client in self.clients[:rooms]:
                n = self.number
                self.number += 1
                self.counts[n] = 0
                self.sent[n] = time.perf_counter()
                client.send_text(b"%d" % n)
                pending.append(n)
                await asyncio.sleep(1 / 200)
            deadline = loop.time() + 20.0
            while any(n in self.counts for n in pending) and loop.time() < deadline:
                self.arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 1.0)
            if not any(n in self.counts for n in pending):
                break
            self.counts.clear()
            self.sent.clear()
        else:
            raise RuntimeError("rooms did not deliver to all their members")

    def on_frame(self, client: WSClient, opcode: int, data: bytes) -> None:
        now = time.perf_counter()
        n = int(data)
        count = self.counts.get(n)
        if count is None:
            return
        if self.counting:
            self.latencies.append(now - self.sent[n])
        self.deliveries += 1
        count += 1
        if count < self.room_size:
            self.counts[n] = count
        else:
            del self.counts[n]
            del self.sent[n]
            self.arrived.set()

    async def slice(self) -> dict[str, Any]:
        self.latencies, self.deliveries = [], 0
        perf = time.perf_counter
        clients, size = self.clients, len(self.clients)
        counts, sent = self.counts, self.sent
        window = Window(self.meter)
        start = perf()
        measure_from = start + self.warmup
        end = measure_from + self.duration
        counted: list[int] = []
        done = turn = closed = 0
        measuring = False
        while True:
            now = perf()
            if now >= end:
                break
            if not measuring and now >= measure_from:
                measuring = True
                window.start()
            due = int((now - start) * self.rate) - done
            for _ in range(due):
                n = self.number
                self.number += 1
                counts[n] = 0
                sent[n] = perf()
                if not clients[turn].send_text(b"%d" % n):
                    closed += 1  # the server dropped this client
                elif measuring:
                    counted.append(n)
                turn = (turn + 1) % size
            done += due
            self.counting = measuring
            await asyncio.sleep(0.002)
        result = window.stop() if measuring else {"wall": 0.0}
        offered = len(counted)
        # The frames sent in the window get a second to arrive; later ones
        # are too late for any latency bound this measures.
        deadline = perf() + 1.0
        while any(n in counts for n in counted) and perf() < deadline:
            self.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - perf())
        self.counting = False
        missing = sum(self.room_size - counts[n] for n in counted if n in counts)
        missing += closed * self.room_size
        counts.clear()
        sent.clear()
        result.update(
            count=offered,
            rate=self.rate,
            errors=0,
            deliveries=offered * self.room_size - missing,
            missing=missing,
            closed=closed,
            # What never arrived is later than any bound.
            p99_ms=_p99_with_missing(self.latencies, missing) / 1000,
            latencies_us=_sample(self.latencies),
        )
        return result


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
    scenario: Echo | Fanout | Idle | Warm | CrossFanout | ManyRooms
    if op == "echo":
        scenario = Echo(job)
    elif op == "fanout":
        scenario = Fanout(job)
    elif op == "idle":
        scenario = Idle(job)
    elif op == "warm":
        scenario = Warm(job)
    elif op == "xfanout":
        scenario = CrossFanout(job)
    elif op == "rooms":
        scenario = ManyRooms(job)
    else:
        raise ValueError(f"unknown load job {op!r}")
    try:
        await scenario.open()
    except BaseException:
        # A job that never became ready is never closed by the runner: its
        # connections would stay open (room members the next job's
        # broadcasts must reach too) until the worker exits.
        await close_clients(getattr(scenario, "clients", []))
        raise
    return scenario


def main() -> None:
    """Serve load jobs from stdin until told to stop."""
    raise_fd_limit()
    serve_forever(setup)


if __name__ == "__main__":
    main()
