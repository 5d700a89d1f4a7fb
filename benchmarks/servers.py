"""Start the servers under test as pinned subprocesses and watch them.

Each (system, server) pair is its own process on a free loopback port,
pinned to the server cores; the load generator runs on the others, so the
two never compete for a core (where the machine has more than one).
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from harness.servers import REPO_ROOT, ServerProcess, free_port, server_env

__all__ = [
    "AB_SOURCE_ENV",
    "AB_SYSTEM",
    "APPS",
    "LOG_DIR_ENV",
    "MALLOC_ENV",
    "RAW_REDIS_APP",
    "SERVERS",
    "RunningServer",
    "app_for",
    "cpu_plan",
    "free_port",
    "start_servers",
]

START_TIMEOUT = 60.0

#: system name -> ASGI application path
APPS = {
    "achannels": "benchmarks.apps.achannels_app:app",
    "channels": "benchmarks.apps.channels_app:app",
    "raw": "benchmarks.apps.raw_app:app",
}
#: The hand-written app where rooms span processes (Redis pub/sub).
RAW_REDIS_APP = "benchmarks.apps.raw_redis_app:app"

#: The optional A/B system: achannels from another source tree (set by
#: ``run.py --ab DIR``), served with that tree first on ``PYTHONPATH``.
AB_SYSTEM = "achannels-b"
AB_SOURCE_ENV = "ACHANNELS_BENCH_AB_SRC"

#: server name -> how it is configured (recorded in the results)
SERVERS = {
    "uvicorn": "uvicorn, auto: uvloop + httptools + websockets-sansio, 1 process",
    "hypercorn": "hypercorn, asyncio worker, wsproto, in-process (-w 0)",
    "granian": "granian, ASGI interface, uvloop, 1 worker process, 1 runtime thread",
}


#: glibc's malloc settings for every server process. asyncio's selector
#: transport (hypercorn's asyncio worker) reads with ``sock.recv(256 KiB)``:
#: CPython allocates 256 KiB and shrinks it with realloc. Above glibc's
#: initial mmap threshold (128 KiB) that is an mmap + munmap per read, and
#: the threshold only adapts when such a block is freed with free(), which
#: realloc never does: so whether a process pays two extra syscalls and a
#: page fault per read depends on its history (strace: 1,476 reads, 1,476
#: mmap and 1,476 munmap in one process; 2,608 reads and none in another).
#: That was the 0.80-0.95 swing of hypercorn echo across runs, hitting the
#: hand-written app as much as achannels. Fixed thresholds (the values glibc
#: adapts to once it has freed such a block) give every process the same
#: allocator; uvloop (uvicorn) and granian read into their own buffers.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}


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
    if server == "granian":
        # Backpressure (concurrent requests per worker; a WebSocket is one for
        # its lifetime) defaults to backlog / workers: lift it above the
        # largest idle scenario.
        return [
            sys.executable, "-m", "granian", app,
            "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--loop", "uvloop", "--log-level", "warning",
            "--no-access-log", "--backlog", "4096", "--backpressure", "65536",
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; known: {sorted(SERVERS)}")


def _child_setup() -> None:
    # Runs in the child before exec: let it hold 5,000 sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class RunningServer(ServerProcess):
    """A server subprocess under test: which system on which server, where
    to reach it and what it costs (``rss()``, ``cpu()``)."""

    def __init__(
        self,
        system: str,
        server: str,
        port: int,
        proc: subprocess.Popen[bytes],
        log: Path,
    ) -> None:
        super().__init__(f"{system} on {server}", port, proc, log)
        self.system = system
        self.server = server


def app_for(system: str, layer: str = "memory") -> str:
    """The application ``system`` serves with the channel layer ``layer``."""
    if system == "raw" and layer != "memory":
        return RAW_REDIS_APP
    return APPS.get(system, APPS["achannels"])


#: A directory to keep the servers' output in (for a post-mortem); by
#: default it goes to a temporary directory, removed after the run.
LOG_DIR_ENV = "ACHANNELS_BENCH_SERVER_LOGS"


@contextlib.contextmanager
def _log_dir() -> Iterator[str]:
    keep = os.environ.get(LOG_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield tempfile.mkdtemp(prefix="servers-", dir=keep)
        return
    with tempfile.TemporaryDirectory(prefix="achannels-bench-") as tmp:
        yield tmp


@contextlib.contextmanager
def start_servers(
    pairs: Sequence[tuple[str, str]],
    cores: set[int],
    *,
    layer: str = "memory",
    layer_env: Mapping[str, Mapping[str, str]] | None = None,
    processes: int = 1,
) -> Iterator[list[RunningServer]]:
    """Start every (system, server) pair at once (their start-up costs
    overlap) and stop them all afterwards: ``processes`` processes per pair,
    each on its own port, sharing ``layer`` (configured by the environment
    ``layer_env[system]``)."""
    running: list[RunningServer] = []
    with _log_dir() as tmp:
        try:
            for (system, server), n in (
                (pair, n) for pair in pairs for n in range(processes)
            ):
                port = free_port()
                env = server_env(
                    extra={**MALLOC_ENV, **(layer_env or {}).get(system, {})}
                )
                app, system_env = app_for(system, layer), env
                if system == AB_SYSTEM:
                    system_env = dict(env)
                    system_env["PYTHONPATH"] = os.pathsep.join(
                        (os.environ[AB_SOURCE_ENV], env["PYTHONPATH"])
                    )
                log = Path(tmp) / f"{system}-{server}-{n}.log"
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
                srv.wait_until_listening(START_TIMEOUT)
                srv.pin(cores)
            yield running
        finally:
            for srv in running:
                srv.stop()
