"""Start the servers under test as pinned subprocesses and watch them.

Each (system, server) pair is its own process on a free loopback port,
pinned to the server cores; the load generator runs on the others, so the
two never compete for a core (where the machine has more than one).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "AB_SOURCE_ENV",
    "AB_SYSTEM",
    "APPS",
    "SERVERS",
    "RunningServer",
    "cpu_plan",
    "free_port",
    "start_servers",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

#: system name -> ASGI application path
APPS = {
    "achannels": "benchmarks.apps.achannels_app:app",
    "channels": "benchmarks.apps.channels_app:app",
    "raw": "benchmarks.apps.raw_app:app",
}

#: The optional A/B system: achannels from another source tree (set by
#: ``run.py --ab DIR``), served with that tree first on ``PYTHONPATH``.
AB_SYSTEM = "achannels-b"
AB_SOURCE_ENV = "ACHANNELS_BENCH_AB_SRC"

#: server name -> how it is configured (recorded in the results)
SERVERS = {
    "uvicorn": "uvicorn, auto: uvloop + httptools + websockets-sansio, 1 process",
    "hypercorn": "hypercorn, asyncio worker, wsproto, in-process (-w 0)",
}


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_plan() -> tuple[set[int], set[int]]:
    """(server cores, load generator cores): split the cores we may use in
    two halves; with a single core both share it."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), set(cores)
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


def command(server: str, app: str, port: int) -> list[str]:
    """The command line that serves ``app`` with ``server`` on ``port``."""
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", app,
            "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--lifespan", "off",
            "--backlog", "4096",
        ]  # fmt: skip
    if server == "hypercorn":
        return [
            sys.executable, "-m", "hypercorn", app,
            "--bind", f"127.0.0.1:{port}", "--workers", "0",
            "--log-level", "warning", "--backlog", "4096",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; known: {sorted(SERVERS)}")


def _child_setup() -> None:
    # Runs in the child before exec: let it hold 5,000 sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class RunningServer:
    """A server subprocess: where to reach it and what it costs."""

    def __init__(
        self,
        system: str,
        server: str,
        port: int,
        proc: subprocess.Popen[bytes],
        log: Path,
    ) -> None:
        self.system = system
        self.server = server
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc
        self.log = log

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def output(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _processes(self) -> list[object]:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        """Resident memory of the server (and any children), in bytes."""
        total = 0
        for proc in self._processes():
            with contextlib.suppress(Exception):
                total += proc.memory_info().rss  # type: ignore[attr-defined]
        return total

    def cpu(self) -> float:
        """CPU seconds the server has used so far."""
        total = 0.0
        for proc in self._processes():
            with contextlib.suppress(Exception):
                times = proc.cpu_times()  # type: ignore[attr-defined]
                total += times.user + times.system
        return total

    def quiesce(self, threshold: float = 0.05, timeout: float = 5.0) -> None:
        """Wait until the server is idle (below ``threshold`` of a core over
        50 ms), so its teardown of the last scenario does not steal CPU from
        the next measurement."""
        deadline = time.monotonic() + timeout
        before = self.cpu()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.cpu()
            if now - before < threshold * 0.05:
                return
            before = now

    def pin(self, cores: set[int]) -> None:
        """Move the server, its threads and any children onto ``cores``
        (affinity is per thread on Linux; threads started later inherit it)."""
        for proc in self._processes():
            pid = proc.pid  # type: ignore[attr-defined]
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cores)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.system} on {self.server} exited:\n{self.output()[-4000:]}"
            )

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL) and return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.output()


def _wait_until_listening(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        server.check_alive()
        with (
            contextlib.suppress(OSError),
            socket.create_connection((server.host, server.port), 0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(
        f"{server.system} on {server.server} not listening within "
        f"{START_TIMEOUT}s:\n{server.output()}"
    )


@contextlib.contextmanager
def start_servers(
    pairs: Sequence[tuple[str, str]], cores: set[int]
) -> Iterator[list[RunningServer]]:
    """Start every (system, server) pair at once (their start-up costs
    overlap) and stop them all afterwards."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    running: list[RunningServer] = []
    with tempfile.TemporaryDirectory(prefix="achannels-bench-") as tmp:
        try:
            for system, server in pairs:
                port = free_port()
                log = Path(tmp) / f"{system}-{server}.log"
                app, system_env = APPS.get(system, APPS["achannels"]), env
                if system == AB_SYSTEM:
                    system_env = dict(env)
                    system_env["PYTHONPATH"] = os.pathsep.join(
                        (os.environ[AB_SOURCE_ENV], env["PYTHONPATH"])
                    )
                with log.open("wb") as sink:
                    proc = subprocess.Popen(
                        command(server, app, port),
                        cwd=REPO_ROOT,
                        env=system_env,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_child_setup,
                    )
                running.append(RunningServer(system, server, port, proc, log))
            # Start-up runs on every core (it is not measured); pin afterwards.
            for srv in running:
                _wait_until_listening(srv)
                srv.pin(cores)
            yield running
        finally:
            for srv in running:
                srv.stop()
