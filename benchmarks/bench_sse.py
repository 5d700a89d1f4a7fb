"""Server-Sent Events against WebSockets on the same server: group fan-out
to many streams (deliveries/s) and memory per idle stream.

Both sides are achannels consumers joined to one group on the in-memory
layer; an HTTP trigger ``group_send``s ``--messages`` messages and the
clock runs until every client has every message. The clients are lean
``asyncio.Protocol`` objects (``wsclient.py`` for WebSockets, a counterpart
here for event streams), so the load generator is not what is measured.

Run on its own (any environment with achannels and uvicorn)::

    python -m benchmarks.bench_sse                      # 1,000 streams each
    python -m benchmarks.bench_sse --clients 200 --rounds 3 --server hypercorn

To wire it into ``run.py``: a scenario whose job starts the two servers of
the cell (``serve``) and calls :func:`measure`, reporting
``deliveries_per_s`` and ``bytes_per_idle`` per kind; the SSE/WS ratio is
the figure of merit, as elsewhere in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from harness.servers import REPO_ROOT, ServerProcess, free_port, server_env

from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.sse import AsyncEventStreamConsumer
from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.layers import channel_layers, get_channel_layer
from achannels.routing import ProtocolTypeRouter, URLRouter, path

from .loadgen import raise_fd_limit
from .servers import command, cpu_plan
from .wsclient import connect as ws_connect

__all__ = ["application", "measure"]

APP = "benchmarks.bench_sse:application"
PAYLOAD = "x" * 32
CONNECT_PARALLELISM = 128
TIMEOUT = 60.0

# -- the server side ---------------------------------------------------------

channel_layers.configure(
    {
        "default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }
)


class FanoutStream(AsyncEventStreamConsumer):
    groups = ["sse"]
    heartbeat_interval = 300.0

    async def bench_tick(self, message: dict[str, Any]) -> None:
        await self.send_event(message["text"])


class FanoutSocket(AsyncWebsocketConsumer):
    groups = ["ws"]

    async def bench_tick(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])


class Trigger(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        request = json.loads(body)
        layer = get_channel_layer()
        assert layer is not None
        for _ in range(request["count"]):
            await layer.group_send(
                request["group"], {"type": "bench.tick", "text": PAYLOAD}
            )
        await self.send_response(200, b"ok")


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [path("sse/", FanoutStream.as_asgi()), path("trigger/", Trigger.as_asgi())]
        ),
        "websocket": URLRouter([path("ws/", FanoutSocket.as_asgi())]),
    }
)

# -- the client side ---------------------------------------------------------


class StreamClient(asyncio.Protocol):
    """One event stream: counts events (a blank line ends each) after the
    opening comment; chunked framing is ignored, nothing else is sent."""

    def __init__(self, request: bytes, counter: list[int]) -> None:
        self.request = request
        self.counter = counter
        self.opened = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("stream closed"))

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self._head += data
            if b"\n\n" not in self._head.partition(b"\r\n\r\n")[2]:
                return
            self.opened.set_result(None)  # headers and the opening comment
            return
        # Events are "data: ...\n\n"; chunk-size lines end in \r\n, never \n\n.
        text = self._tail + data
        self.counter[0] += text.count(b"\n\n") - self._tail.count(b"\n\n")
        self._tail = text[-1:]


async def open_streams(port: int, count: int, counter: list[int]) -> list[Any]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /sse/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(CONNECT_PARALLELISM)

    async def one() -> StreamClient:
        async with gate:
            _, client = await loop.create_connection(
                lambda: StreamClient(request, counter), "127.0.0.1", port
            )
            await asyncio.wait_for(client.opened, TIMEOUT)
            return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def open_sockets(port: int, count: int, counter: list[int]) -> list[Any]:
    gate = asyncio.Semaphore(CONNECT_PARALLELISM)

    def on_frame(client: object, opcode: int, payload: bytes) -> None:
        counter[0] += 1

    async def one() -> Any:
        async with gate:
            return await ws_connect("127.0.0.1", port, "/ws/", on_frame)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def trigger(port: int, group: str, count: int) -> None:
    body = json.dumps({"group": group, "count": count}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /trigger/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await reader.read()
    writer.close()


async def wait_count(counter: list[int], target: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while counter[0] < target:  # noqa: ASYNC110 - counted by protocols
            await asyncio.sleep(0.001)


class Fleet:
    """``clients`` streams (``kind`` "sse") or WebSockets ("ws") open to
    one server, and what they cost it."""

    def __init__(self, server: ServerProcess, kind: str, clients: int) -> None:
        self.server = server
        self.kind = kind
        self.clients = clients
        self.counter = [0]
        self.connections: list[Any] = []
        self.bytes_per_idle = 0.0

    async def open(self) -> None:
        rss_before = self.server.rss()
        opener = open_streams if self.kind == "sse" else open_sockets
        self.connections = await opener(self.server.port, self.clients, self.counter)
        await asyncio.sleep(1.0)  # let the server settle its allocations
        self.bytes_per_idle = (self.server.rss() - rss_before) / self.clients

    async def fan_out(self, messages: int) -> float:
        """Deliveries/s of ``messages`` group messages to every client."""
        self.counter[0] = 0
        started = time.perf_counter()
        await trigger(self.server.port, self.kind, messages)
        await wait_count(self.counter, self.clients * messages)
        return self.clients * messages / (time.perf_counter() - started)

    def close(self) -> None:
        for connection in self.connections:
            connection.transport.close()


async def measure(
    servers: dict[str, ServerProcess], clients: int, messages: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Open the fleets (``servers``: kind -> its server), then alternate
    fan-out rounds between them; medians, so drift touches both alike."""
    fleets = {kind: Fleet(server, kind, clients) for kind, server in servers.items()}
    await asyncio.sleep(0.5)
    for fleet in fleets.values():
        await fleet.open()
    rates: dict[str, list[float]] = {kind: [] for kind in fleets}
    try:
        for n in range(rounds):
            order = list(fleets.values())
            for fleet in order if n % 2 == 0 else reversed(order):
                rates[fleet.kind].append(await fleet.fan_out(messages))
    finally:
        for fleet in fleets.values():
            fleet.close()
    return {
        kind: {
            "deliveries_per_s": statistics.median(rates[kind]),
            "bytes_per_idle": fleet.bytes_per_idle,
        }
        for kind, fleet in fleets.items()
    }


def server_command(server: str, port: int) -> list[str]:
    if server == "granian":  # not (yet) in servers.py
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", APP,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--backlog", "4096",
        ]  # fmt: skip
    return command(server, APP, port)


def serve(server: str, log: Path) -> ServerProcess:
    port = free_port()
    process = ServerProcess.launch(
        server, server_command(server, port), port, log, cwd=REPO_ROOT, env=server_env()
    )
    process.wait_until_listening(30)
    return process


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    server_cores, client_cores = cpu_plan()
    os.sched_setaffinity(0, client_cores)
    with tempfile.TemporaryDirectory(prefix="achannels-bench-sse-") as tmp:
        servers = {
            kind: serve(args.server, Path(tmp) / f"{kind}.log")
            for kind in ("sse", "ws")
        }
        try:
            for process in servers.values():
                process.pin(server_cores)
            return await measure(servers, args.clients, args.messages, args.rounds)
        finally:
            for process in servers.values():
                process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server", default="uvicorn", choices=["uvicorn", "hypercorn", "granian"]
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print JSON (run.py)")
    args = parser.parse_args()
    raise_fd_limit()
    results = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(results))
        return
    sse, ws = results["sse"], results["ws"]
    print(
        f"{args.server}, {args.clients} clients, "
        f"{args.messages} messages x {args.rounds} rounds"
    )
    print(f"{'':24}{'SSE':>12}{'WebSocket':>12}{'SSE/WS':>8}")
    for key, label in (
        ("deliveries_per_s", "fan-out deliveries/s"),
        ("bytes_per_idle", "bytes per idle conn"),
    ):
        print(
            f"{label:24}{sse[key]:>12,.0f}{ws[key]:>12,.0f}{sse[key] / ws[key]:>8.2f}"
        )


if __name__ == "__main__":
    main()
