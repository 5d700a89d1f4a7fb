"""A server subprocess on a loopback port: start it, know when it listens,
read what it printed and what it costs, stop it.

One implementation for both users of real servers: the test suite
(``tests/support/servers.py``) and the benchmarks (``benchmarks/servers.py``).
It lives outside both so that neither imports the other; it needs only the
standard library (``psutil`` for the cost readings, imported when used).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["REPO_ROOT", "ServerProcess", "free_port", "server_env"]

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 15.0

_Server = TypeVar("_Server", bound="ServerProcess")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    paths: Iterable[str | os.PathLike[str]] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment for a server child: the repository, then
    ``paths``, first on ``PYTHONPATH``; unbuffered output; then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        str(p) for p in (REPO_ROOT, *paths, env.get("PYTHONPATH", "")) if str(p)
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """A server subprocess whose output goes to ``log``.

    ``label`` names it in errors (a server kind, or "system on server").
    """

    def __init__(
        self, label: str, port: int, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        self.label = label
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc
        self.log = log

    @classmethod
    def launch(
        cls: type[_Server],
        label: str,
        argv: Sequence[str],
        port: int,
        log: Path,
        *,
        cwd: str | os.PathLike[str] = REPO_ROOT,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> _Server:
        """Start ``argv`` (which must listen on ``port``), output to ``log``."""
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else server_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec_fn,
            )
        return cls(label, port, proc, log)

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def output(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

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

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` with the output if the server has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.label} exited:\n{self.output()[-4000:]}")

    def wait_until_listening(self, timeout: float) -> None:
        """Return once a TCP connect to the port succeeds; a server that
        exits or never listens fails fast with its output attached."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.5),
            ):
                if self._listens_here():
                    return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.label} not listening within {timeout}s:\n{self.output()}"
        )

    def _listens_here(self) -> bool:
        """Whether this server (or a child) is what listens on the port.

        On a busy machine another process can bind the port we picked while
        this server is still starting (a parallel test's server): a connect
        then succeeds, and the test talks to the wrong server (a 404). This
        server then exits with "address already in use", and ``serve``
        retries on another port."""
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            return True  # cannot tell
        for proc in self._processes():
            try:
                connections = proc.net_connections(kind="tcp")  # type: ignore[attr-defined]
            except psutil.Error:
                return True  # cannot tell
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                for c in connections
            ):
                return True
        return False

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server with ``sig`` (SIGKILL if it lingers), wait for it,
        return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.output()

    # What the server costs: psutil is a test and benchmark dependency only.

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
        50 ms), so its teardown of one measurement does not steal CPU from
        the next."""
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
