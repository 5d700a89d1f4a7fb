"""Run a real ASGI server in a subprocess on a free loopback port.

One helper for every test that crosses a socket (``SERVER_KINDS``): uvicorn
with its default WebSocket implementation (``websockets-sansio``, what
``--ws auto`` picks) and ``wsproto``, hypercorn and granian.
``server_command`` also knows uvicorn's deprecated legacy ``--ws websockets``
(``uvicorn-websockets``), for a suite that wants it.
The server is ready when a TCP connect succeeds; the deadline makes a server
that never starts fail fast with its output attached.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from harness.servers import REPO_ROOT, ServerProcess, free_port, server_env

__all__ = ["SERVER_KINDS", "RunningServer", "free_port", "serve", "server_command"]

SERVER_KINDS = ("uvicorn-websockets-sansio", "uvicorn-wsproto", "hypercorn", "granian")
START_TIMEOUT = 30.0


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
    if kind == "granian":
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", app,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
            *extra_args,
        ]  # fmt: skip
    raise ValueError(f"unknown server kind {kind!r}; known: {SERVER_KINDS}")


class RunningServer(ServerProcess):
    """A server subprocess of one ``kind`` and where to reach it."""

    def __init__(
        self, kind: str, port: int, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        super().__init__(kind, port, proc, log)
        self.kind = kind
        self.url = f"http://{self.host}:{port}"
        self.ws_url = f"ws://{self.host}:{port}"


@contextlib.contextmanager
def serve(
    app: str,
    kind: str = "uvicorn-websockets-sansio",
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Serve ``app`` with ``kind`` (or run ``command``, which must listen on
    ``port``) for the duration of the block; stop it afterwards."""
    # A port we picked can be taken (an outgoing connection's ephemeral
    # port, on a busy machine) before the server binds it: pick another.
    attempts = 3 if port is None and command is None else 1
    paths = [cwd] if cwd else []
    with tempfile.TemporaryDirectory(prefix="achannels-server-") as tmp:
        for attempt in range(attempts):
            chosen = port or free_port()
            argv = (
                list(command)
                if command is not None
                else server_command(kind, app, chosen, extra_args)
            )
            server = RunningServer.launch(
                kind,
                argv,
                chosen,
                Path(tmp) / f"server-{attempt}.log",
                cwd=cwd or REPO_ROOT,
                env=server_env(paths, env),
            )
            try:
                server.wait_until_listening(START_TIMEOUT)
                break
            except RuntimeError:
                server.stop()
                if attempt + 1 == attempts or "already in use" not in server.output():
                    raise
        try:
            yield server
        finally:
            server.stop()
