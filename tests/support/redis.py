"""Redis for the tests: the shared server's URL, and private servers.

``require_redis()`` returns ``ACHANNELS_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) when a server answers there; otherwise it skips
the test, or fails it when ``CI=true``. :class:`PrivateRedis` starts a
``redis-server`` of the test's own on a free port (for sharding and restart
tests) and kills it at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

import redis

__all__ = [
    "REDIS_URL",
    "PrivateRedis",
    "PrivateSentinel",
    "private_redis",
    "require_redis",
    "unique_prefix",
]

REDIS_URL = os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_available: bool | None = None


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False
    finally:
        client.close()


def require_redis() -> str:
    """Return the test Redis URL; skip (or fail under ``CI=true``) without it."""
    global _available
    if _available is None:
        _available = _answers(REDIS_URL)
    if not _available:
        reason = f"no Redis answers at {REDIS_URL} (set ACHANNELS_TEST_REDIS_URL)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_URL


def unique_prefix() -> str:
    """Return a key prefix no other test uses."""
    return f"test{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A ``redis-server`` process owned by one test, on a free port."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            message = "redis-server is not installed"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self._executable = executable
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """Return the server's command line: no persistence, loopback only."""
        return [
            self._executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.url):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server and wait until it is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def client(self) -> redis.Redis:
        """Return a synchronous client of this server."""
        return redis.Redis.from_url(self.url)


class PrivateSentinel(PrivateRedis):
    """A Redis Sentinel watching ``master`` under the name ``mymaster``."""

    def __init__(self, master: PrivateRedis) -> None:
        super().__init__()
        self._directory = tempfile.TemporaryDirectory()
        config = os.path.join(self._directory.name, "sentinel.conf")
        with open(config, "w") as file:
            file.write(
                f"port {self.port}\nbind 127.0.0.1\n"
                f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            )
        # Sentinel rewrites its config file, so each gets its own.
        self._config = config

    def command(self) -> list[str]:
        """Return the sentinel's command line (the config file comes first)."""
        return [self._executable, self._config, "--sentinel"]

    def stop(self) -> None:
        """Kill the sentinel and remove its config."""
        super().stop()
        self._directory.cleanup()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """Run a private ``redis-server`` for the duration of the block."""
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def host_of(url: str) -> tuple[str, int]:
    """Return ``(host, port)`` of a Redis URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379
