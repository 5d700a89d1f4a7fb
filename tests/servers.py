"""Run a real ASGI server in a subprocess on a free loopback port.

One helper for every test that crosses a socket: uvicorn with its
``websockets`` and ``wsproto`` WebSocket implementations, and hypercorn.
The server is ready when a TCP connect succeeds; the deadline makes a server
that never starts fail fast with its output attached.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["SERVER_KINDS", "RunningServer", "free_port", "serve", "server_command"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_KINDS = ("uvicorn-websockets", "uvicorn-wsproto", "hypercorn")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(
    kind: str, app: str, port: int, extra_args: Sequence[str] = ()
) -> list[str]:
    """The command line that serves ``app`` (``module:attribute``) with ``kind``."""
    if kind.startswith("uvicorn-"):
        ws = kind.removeprefix("uvicorn-")
        return [
            sys.executable, "-m", "uvicorn", app,
            "--host", "127.0.0.1", "--port", str(port),
            "--ws", ws, "--lifespan", "on", "--log-level", "info",
            *extra_args,
        ]  # fmt: skip
    if kind == "hypercorn":
        return [
            sys.executable, "-m", "hypercorn", app,
            "--bind", f"127.0.0.1:{port}", "--log-level", "info",
            "--error-logfile", "-", "--graceful-timeout", "5",
            *extra_args,
        ]  # fmt: skip
    raise ValueError(f"unknown server kind {kind!r}; known: {SERVER_KINDS}")


class RunningServer:
    """A server subprocess and where to reach it."""

    def __init__(
        self, kind: str, port: int, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc
        self.log = log
        self.url = f"http://{self.host}:{port}"
        self.ws_url = f"ws://{self.host}:{port}"

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until the server printed ``needle``; return the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if needle in out:
                return out
            time.sleep(0.05)
        raise AssertionError(
            f"{needle!r} not printed within {timeout}s:\n{self.output()}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server with ``sig``, wait for it, return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.output()


def _wait_until_listening(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.kind} exited early:\n{server.output()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection((server.host, server.port), 0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(
        f"{server.kind} not listening within {START_TIMEOUT}s:\n{server.output()}"
    )


@contextlib.contextmanager
def serve(
    app: str,
    kind: str = "uvicorn-websockets",
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Serve ``app`` with ``kind`` (or run ``command``, which must listen on
    ``port``) for the duration of the block; stop it afterwards."""
    port = port or free_port()
    argv = (
        list(command)
        if command is not None
        else server_command(kind, app, port, extra_args)
    )
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(cwd or ""), full_env.get("PYTHONPATH", "")) if p
    )
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="achannels-server-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                cwd=cwd or REPO_ROOT,
                env=full_env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = RunningServer(kind, port, proc, log)
        try:
            _wait_until_listening(server)
            yield server
        finally:
            server.stop()
