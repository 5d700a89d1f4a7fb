"""Publishing from sync code: achannels' publisher against Channels'
``async_to_sync(layer.group_send)``, on Redis, in one run.

Each system sends ``group_send`` to a group of 10 members from plain
threads (what Django views, signals, commands and Celery tasks are), with
1 thread and with 8 threads at once, for a few seconds:

- ``achannels publisher``: ``Publisher().group_send(...)`` on
  ``achannels.layers.redis.RedisChannelLayer``;
- ``achannels async_to_sync``: ``async_to_sync(layer.group_send)(...)`` on
  the same layer (what code written for Channels does, unchanged);
- ``Channels async_to_sync``: the same call on
  ``channels_redis.core.RedisChannelLayer`` 4.3 (needs the bench venv).

Reported: calls per second, p99 latency of a call, and Redis connections
opened per 1,000 calls (``total_connections_received``): the reuse the
publisher is for. Systems alternate, the medians are compared. Without
``--redis`` it starts a private ``redis-server`` (when one is installed) so
that nobody else's connections are counted.

    benchmarks/.venv/bin/python benchmarks/bench_publisher.py [--quick] [--redis URL]

To wire it into ``benchmarks/run.py``, call :func:`measure` (it returns the
rows that ``--json`` prints) from a ``publisher`` scenario and render
:func:`table` in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

MEMBERS = 10


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def connections_received(url: str) -> int:
    client = redis_client(url)
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


def make_system(name: str, url: str, prefix: str) -> tuple[Any, Callable[..., None]]:
    """Return ``(layer, sync group_send)`` for system ``name``."""
    from asgiref.sync import async_to_sync

    if name == "Channels async_to_sync":
        from channels_redis.core import RedisChannelLayer as TheirLayer

        layer: Any = TheirLayer(hosts=[url], prefix=prefix, capacity=10**9)
        return layer, async_to_sync(layer.group_send)
    from achannels.layers import Publisher
    from achannels.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[url], prefix=prefix, capacity=10**9)
    if name == "achannels publisher":
        return layer, Publisher(layer=layer).group_send
    return layer, async_to_sync(layer.group_send)


def run_system(name: str, url: str, threads: int, seconds: float) -> dict[str, float]:
    from asgiref.sync import async_to_sync

    prefix = f"benchpub{uuid.uuid4().hex[:8]}"
    layer, group_send = make_system(name, url, prefix)
    for i in range(MEMBERS):
        async_to_sync(layer.group_add)("news", f"member{i}.x!y{i}")
    message = {"type": "news.item", "text": "x" * 100}
    for _ in range(20):  # warm up
        group_send("news", message)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def work(index: int) -> None:
        mine = latencies[index]
        start.wait()
        while True:
            began = time.perf_counter()
            group_send("news", message)
            ended = time.perf_counter()
            mine.append(ended - began)
            if ended > deadline:
                return

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    opened = connections_received(url)
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    opened = connections_received(url) - opened
    client = redis_client(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.unlink(key)
    finally:
        client.close()
    every = sorted(x for mine in latencies for x in mine)
    calls = len(every)
    return {
        "calls_per_s": calls / elapsed,
        "p99_ms": every[int(calls * 0.99) - 1] * 1000,
        "connections_per_1000": opened * 1000 / calls,
    }


def available_systems() -> list[str]:
    systems = ["achannels publisher", "achannels async_to_sync"]
    try:
        import channels_redis.core  # noqa: F401
    except ImportError:
        print(
            "channels_redis is not installed: Channels skipped (use the bench venv)",
            file=sys.stderr,
        )
    else:
        systems.append("Channels async_to_sync")
    return systems


def measure(url: str, seconds: float = 3.0, rounds: int = 3) -> list[dict[str, Any]]:
    """Return one row per (system, threads): medians over ``rounds``."""
    systems = available_systems()
    rows = []
    for threads in (1, 8):
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
        for _ in range(rounds):
            for name in systems:  # alternate, so drift hits all alike
                samples[name].append(run_system(name, url, threads, seconds))
        for name in systems:
            row: dict[str, Any] = {"system": name, "threads": threads}
            for figure in samples[name][0]:
                row[figure] = statistics.median(s[figure] for s in samples[name])
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Sync group_send to {MEMBERS} members on Redis (RedisChannelLayer)",
        "",
        "| system | threads | calls/s | vs Channels | p99 (ms) "
        "| Redis connections per 1,000 calls |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        base = next(
            (
                other["calls_per_s"]
                for other in rows
                if other["system"] == "Channels async_to_sync"
                and other["threads"] == row["threads"]
            ),
            None,
        )
        ratio = f"{row['calls_per_s'] / base:.2f}x" if base else "-"
        lines.append(
            f"| {row['system']} | {row['threads']} | {row['calls_per_s']:,.0f} | "
            f"{ratio} | {row['p99_ms']:.2f} | {row['connections_per_1000']:,.1f} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """Run a ``redis-server`` of our own on a free port; yield its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_client(url).ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default=os.environ.get("ACHANNELS_BENCH_REDIS_URL"))
    parser.add_argument("--quick", action="store_true", help="1 s, 1 round")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    with contextlib.ExitStack() as stack:
        url = args.redis
        if url is None and shutil.which("redis-server"):
            url = stack.enter_context(private_redis())
        rows = measure(url or "redis://127.0.0.1:6379/0", args.seconds, args.rounds)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
