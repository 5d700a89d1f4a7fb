"""What the framework alone costs: the apps driven in-process, no server.

A server's per-message work (parsing frames, writing sockets) is the same
for every system on it; what differs is what the application does between
``receive`` and ``send``. This drives each system's application through a
minimal fake server (an ``asyncio.Queue`` per connection for ``receive``, a
function that records the event for ``send``) and reports, per system:

- ``echo``: CPU microseconds per echoed message over ``connections`` busy
  connections;
- ``connect``: CPU microseconds per connect + accept + disconnect;
- ``fanout``: CPU microseconds per delivered group message (one broadcast
  reaching ``connections`` members);
- ``memory``: bytes allocated (tracemalloc) per open, idle connection.

Subtracting the hand-written app's figure gives the framework's overhead,
and with the server's own cost per message (from a real run) it predicts
the ratio a real server run can reach: ``server / (server + overhead)``.

    python -m benchmarks.inprocess [--profile echo|connect|fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import json
import pstats
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from benchmarks.servers import REPO_ROOT

__all__ = ["APPS", "FakeConnection", "measure", "run_all"]

T = TypeVar("T")
Message = dict[str, Any]
App = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Any], Awaitable[None]]

APPS = {
    "achannels": "benchmarks.apps.achannels_app",
    "channels": "benchmarks.apps.channels_app",
    "raw": "benchmarks.apps.raw_app",
}


def load_app(system: str) -> App:
    """The ASGI app of ``system`` (importing it configures its layer)."""
    module = importlib.import_module(APPS[system])
    app: App = module.app
    return app


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
        "state": {},
    }


class FakeConnection:
    """One WebSocket as an ASGI server would present it, minus the socket."""

    def __init__(self, app: App, path: str, on_send: Callable[[Message], None]):
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.on_send = on_send
        self.accepted = asyncio.get_running_loop().create_future()
        self.task = asyncio.ensure_future(app(_scope(path), self.inbox.get, self.send))

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.accept":
            if not self.accepted.done():
                self.accepted.set_result(None)
            return
        self.on_send(message)

    async def open(self) -> None:
        self.inbox.put_nowait({"type": "websocket.connect"})
        await self.accepted

    async def close(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)


async def _open(app: App, path: str, n: int, on_send: Any) -> list[FakeConnection]:
    conns = [FakeConnection(app, path, on_send) for _ in range(n)]
    await asyncio.gather(*(c.open() for c in conns))
    return conns


class SendCountdown:
    """Counts what the app sends and resolves a future once as many sends
    as expected have arrived."""

    def __init__(self) -> None:
        self._left = 0
        self._done: asyncio.Future[None] | None = None

    def expect(self, count: int) -> asyncio.Future[None]:
        """Start counting ``count`` sends; the future resolves at the last."""
        self._left = count
        self._done = asyncio.get_running_loop().create_future()
        return self._done

    def on_send(self, message: Message) -> None:
        self._left -= 1
        if self._left == 0 and self._done is not None:
            self._done.set_result(None)


async def bench_echo(app: App, connections: int, messages: int) -> float:
    """CPU µs per echoed message, ``connections`` connections in lockstep."""
    sends = SendCountdown()
    conns = await _open(app, "/echo/", connections, sends.on_send)
    frame = {"type": "websocket.receive", "text": "x" * 16}
    rounds = max(1, messages // connections)
    cpu = 0.0
    for _ in range(rounds):
        done = sends.expect(connections)
        t0 = time.process_time()
        for conn in conns:
            conn.inbox.put_nowait(frame)
        await done
        cpu += time.process_time() - t0
    for conn in conns:
        await conn.close()
    return 1e6 * cpu / (rounds * connections)


async def bench_connect(app: App, connections: int) -> float:
    """CPU µs per connect + accept + disconnect, in batches."""
    batch = 50
    t0 = time.process_time()
    done = 0
    while done < connections:
        conns = await _open(app, "/echo/", batch, lambda m: None)
        for conn in conns:
            conn.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(asyncio.gather(*(c.task for c in conns)), 10)
        done += batch
    return 1e6 * (time.process_time() - t0) / done


async def bench_fanout(app: App, connections: int, broadcasts: int) -> float:
    """CPU µs per delivery of a broadcast to ``connections`` members."""
    sends = SendCountdown()
    conns = await _open(app, "/room/", connections, sends.on_send)
    cpu = 0.0
    for n in range(broadcasts):
        done = sends.expect(connections)
        t0 = time.process_time()
        conns[0].inbox.put_nowait({"type": "websocket.receive", "text": f"b{n}"})
        await asyncio.wait_for(done, 60)
        cpu += time.process_time() - t0
    for conn in conns:
        await conn.close()
    return 1e6 * cpu / (broadcasts * connections)


async def bench_memory(app: App, connections: int) -> float:
    """Bytes allocated per idle open connection (after a warm-up)."""
    warm = await _open(app, "/echo/", 10, lambda m: None)
    for conn in warm:
        await conn.close()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    conns = await _open(app, "/echo/", connections, lambda m: None)
    await asyncio.sleep(0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for conn in conns:
        await conn.close()
    # The fake server's own objects (queue, future, task of the app call)
    # count too, as a real server's do; they are the same for every system.
    return (after - before) / connections


async def measure(system: str, sizes: dict[str, int]) -> dict[str, float]:
    """Every in-process figure for ``system``."""
    app = load_app(system)
    return {
        "echo_us": await bench_echo(app, sizes["connections"], sizes["messages"]),
        "connect_us": await bench_connect(app, sizes["connects"]),
        "fanout_us": await bench_fanout(app, sizes["members"], sizes["broadcasts"]),
        "memory_bytes": await bench_memory(app, sizes["idle"]),
    }


SIZES = {
    "connections": 50,
    "messages": 50_000,
    "connects": 2_000,
    "members": 1_000,
    "broadcasts": 20,
    "idle": 2_000,
}


def run_all(systems: list[str], sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    """Measure each system in its own process (Channels configures Django
    settings, which must not leak into the others)."""
    results = {}
    for system in systems:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.inprocess", "--systems", system,
             "--json", json.dumps(sizes)],
            capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=120,
        )  # fmt: skip
        results[system] = json.loads(out.stdout)
    return results


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when installed, as uvicorn does by default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def _profile(system: str, what: str, sizes: dict[str, int]) -> None:
    app = load_app(system)

    async def go() -> None:
        if what == "echo":
            await bench_echo(app, sizes["connections"], sizes["messages"])
        elif what == "connect":
            await bench_connect(app, sizes["connects"])
        else:
            await bench_fanout(app, sizes["members"], sizes["broadcasts"])

    profiler = cProfile.Profile()
    profiler.enable()
    _run_loop(go())
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="achannels,channels,raw")
    parser.add_argument("--profile", choices=["echo", "connect", "fanout"])
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier")
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {k: max(1, int(v * args.scale)) for k, v in SIZES.items()}
    systems = [s for s in args.systems.split(",") if s]
    if args.json:
        figures = _run_loop(measure(systems[0], json.loads(args.json)))
        print(json.dumps(figures))
        return
    if args.profile:
        for system in systems:
            print(f"== {system} {args.profile}")
            _profile(system, args.profile, sizes)
        return
    results = run_all(systems, sizes)
    print(
        f"{'system':10} {'echo µs/msg':>12} {'connect µs':>11} "
        f"{'fanout µs/delivery':>19} {'bytes/idle conn':>16}"
    )
    for system, r in results.items():
        print(
            f"{system:10} {r['echo_us']:12.1f} {r['connect_us']:11.1f} "
            f"{r['fanout_us']:19.2f} {r['memory_bytes']:16,.0f}"
        )


if __name__ == "__main__":
    main()
