"""Helpers of the reliability, security and soak tests.

Real servers are driven with the ``websockets`` client; :class:`StalledClient`
is a WebSocket client on a raw socket that completes the handshake and then
never reads again, so the server's writes pile up in TCP buffers the way they
do for a phone that went into a tunnel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.redis import require_redis, unique_prefix
from tests.support.servers import RunningServer, serve

__all__ = [
    "APP",
    "REDIS_LAYERS",
    "TIMEOUT",
    "RedisServed",
    "StalledClient",
    "closed_with",
    "fetch_json",
    "handshake_status",
    "report",
    "serve_on_redis",
    "server_numbers",
    "wait_for_numbers",
]

APP = "tests.apps.reliability_app:application"
TIMEOUT = 10.0
#: The reliability app's ``RELIABILITY_LAYER`` values for the Redis layers.
REDIS_LAYERS = ("redis", "redis-pubsub")


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measured figure even when output is captured (the docs quote
    them from ``make soak`` and test runs)."""
    with capsys.disabled():
        print(f"\n[figures] {text}")


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait (at most :data:`TIMEOUT`) for the server to close ``ws``; return
    the close code and reason it sent (``None`` if it sent no close frame).
    Frames that arrive first are skipped."""
    deadline = time.monotonic() + TIMEOUT
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
    received = closed.value.rcvd
    return (received.code, received.reason) if received else (None, None)


def _fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return json.loads(response.read())


async def fetch_json(url: str) -> Any:
    """GET ``url`` in a thread and return its decoded JSON body."""
    return await asyncio.to_thread(_fetch, url)


async def server_numbers(server: RunningServer) -> dict[str, Any]:
    """The server's own numbers from the app's ``introspect/`` route."""
    numbers: dict[str, Any] = await fetch_json(f"{server.url}/introspect/")
    return numbers


async def wait_for_numbers(
    server: RunningServer, expected: dict[str, Any], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Poll ``introspect/`` until every key of ``expected`` has that value;
    return the last numbers, or fail with them at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        numbers = await server_numbers(server)
        if all(numbers.get(key) == value for key, value in expected.items()):
            return numbers
        if time.monotonic() > deadline:
            raise AssertionError(f"server numbers {numbers} never reached {expected}")
        await asyncio.sleep(0.1)


class RedisServed:
    """A server whose app uses a Redis layer: the server, and whether a
    group of it is empty in Redis."""

    def __init__(self, server: RunningServer, url: str, prefix: str) -> None:
        self.server = server
        self._url = url
        self._prefix = prefix

    async def group_size(self, group: str) -> int:
        """The members of ``group`` that the core layer keeps in Redis (the
        pub/sub layer keeps none there: always 0)."""
        client = redis.asyncio.Redis.from_url(self._url)
        try:
            return int(await client.zcard(f"{self._prefix}:group:{group}"))
        finally:
            await client.aclose()

    async def nothing_left(self, group: str, timeout: float = TIMEOUT) -> None:
        """Wait until no consumer is alive; then check ``group`` is empty."""
        await wait_for_numbers(self.server, {"consumers": 0}, timeout=timeout)
        assert await self.group_size(group) == 0


@contextmanager
def serve_on_redis(
    app: str,
    layer: str,
    kind: str = "uvicorn-websockets-sansio",
    extra_args: Sequence[str] = (),
) -> Iterator[RedisServed]:
    """Serve ``app`` (the reliability app or one built on it) with ``kind``
    on the Redis layer ``layer`` (one of :data:`REDIS_LAYERS`), under a
    prefix of its own on the test Redis (skips without one)."""
    url = require_redis()
    prefix = unique_prefix()
    env = {
        "RELIABILITY_LAYER": layer,
        "RELIABILITY_REDIS_URL": url,
        "RELIABILITY_REDIS_PREFIX": prefix,
    }
    with serve(app, kind, env=env, extra_args=extra_args) as server:
        yield RedisServed(server, url, prefix)


class StalledClient:
    """A WebSocket client that stops reading after the handshake.

    Its receive buffer is made small so that the server's send buffer, not
    the client's, fills first.
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.sock: socket.socket | None = None

    async def open(self) -> None:
        """Connect and complete the handshake (raises on a refusal)."""
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect((self.host, self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError("server closed during the handshake")
            response += chunk
        if not response.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {response!r}")
        self.sock = sock

    def send_text(self, text: str) -> None:
        """Send one masked text frame (short frames only)."""
        assert self.sock is not None
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _handshake_status(
    host: str, port: int, path: str, headers: list[tuple[str, str]]
) -> int:
    with socket.create_connection((host, port), TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(1024)
            if not chunk:
                raise ConnectionError(f"no response to the handshake: {response!r}")
            response += chunk
    return int(response.split(b" ", 2)[1])


async def handshake_status(
    server: RunningServer, path: str, headers: list[tuple[str, str]]
) -> int:
    """Open a WebSocket handshake to ``path`` with exactly ``headers`` added
    (repeats and odd bytes included) and return the HTTP status: 101 when
    accepted."""
    return await asyncio.to_thread(
        _handshake_status, server.host, server.port, path, headers
    )
