"""Redis channel layers: achannels against channels_redis 4.3, in one run.

Scenarios, each for the sorted-set layer (``RedisChannelLayer``) and the
pub/sub layer (``RedisPubSubChannelLayer``) of both libraries:

- send/receive round trips: one task sends to its own channel and receives
  the message, over and over; round trips per second.
- group_send to 100 and to 1,000 members spread over several receiver
  processes, end to end: from the call until every member has the message;
  group messages per second (and deliveries per second).

The two libraries run alternately, several times, and the medians are
compared; absolute numbers on a shared machine are noise, the ratios are the
figure of merit. Prints a Markdown table.

With ``--cluster SEED_URL,...`` the same scenarios also run for achannels on
that Redis Cluster, alternating with the single Redis, and a second table
gives the cluster/single ratio (channels_redis cannot run on a cluster).

    python benchmarks/bench_redis_layer.py [--quick] [--redis URL] [--cluster URLS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

IMPLS = {
    ("achannels", "core"): "achannels.layers.redis.RedisChannelLayer",
    ("channels_redis", "core"): "channels_redis.core.RedisChannelLayer",
    ("achannels", "pubsub"): "achannels.layers.redis.RedisPubSubChannelLayer",
    ("channels_redis", "pubsub"): "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def make_layer(lib: str, kind: str, url: str, prefix: str) -> Any:
    """``url`` is a Redis URL, or ``cluster:<seed URL>,...`` for a cluster."""
    module_name, _, class_name = IMPLS[lib, kind].rpartition(".")
    module = __import__(module_name, fromlist=[class_name])
    hosts: list[Any] = [url]
    if url.startswith("cluster:"):
        hosts = [{"cluster": url.removeprefix("cluster:").split(",")}]
    return getattr(module, class_name)(hosts=hosts, prefix=prefix)


async def close_layer(layer: Any) -> None:
    for name in ("close", "close_pools", "flush"):
        method = getattr(layer, name, None)
        if method is not None:
            try:
                await method()
            except Exception:
                continue
            return


# Scenario 1: round trips in one process.


async def round_trips(lib: str, kind: str, url: str, seconds: float) -> float:
    layer = make_layer(lib, kind, url, f"bench{uuid.uuid4().hex[:8]}")
    channel = await layer.new_channel()
    for _ in range(50):  # warm up connections and scripts
        await layer.send(channel, {"type": "warm"})
        await layer.receive(channel)
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            await layer.send(channel, {"type": "bench", "n": count})
            await layer.receive(channel)
            count += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    await close_layer(layer)
    return count / elapsed


# Scenario 2: group_send end to end, receivers in other processes.


async def receiver_main(args: argparse.Namespace) -> None:
    """A receiver process: ``members`` channels in ``group``; prints ``ready``
    once they joined and ``got <round>`` when all of them got a message."""
    layer = make_layer(args.lib, args.kind, args.redis, args.prefix)
    channels = [await layer.new_channel() for _ in range(args.members)]
    for channel in channels:
        await layer.group_add(args.group, channel)
    counts: dict[int, int] = {}

    async def member(channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            number = message["round"]
            counts[number] = counts.get(number, 0) + 1
            if counts[number] == len(channels):
                del counts[number]
                sys.stdout.write(f"got {number}\n")
                sys.stdout.flush()

    tasks = [asyncio.create_task(member(channel)) for channel in channels]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    await reader.read()  # until the parent closes stdin
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_layer(layer)


async def group_fanout(
    lib: str, kind: str, url: str, members: int, processes: int, rounds: int
) -> float:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    group = "room"
    share = [members // processes + (i < members % processes) for i in range(processes)]
    workers = []
    for count in share:
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--receiver",
                "--lib",
                lib,
                "--kind",
                kind,
                "--redis",
                url,
                "--prefix",
                prefix,
                "--group",
                group,
                "--members",
                str(count),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"receiver failed to start: {line!r}")
        layer = make_layer(lib, kind, url, prefix)
        timings = []
        for number in range(-2, rounds):  # two warm-up rounds
            started = time.perf_counter()
            await layer.group_send(group, {"type": "bench", "round": number})
            for worker in workers:
                assert worker.stdout is not None
                line = await asyncio.wait_for(worker.stdout.readline(), 30)
                if line.strip() != f"got {number}".encode():
                    raise RuntimeError(f"unexpected receiver output {line!r}")
            if number >= 0:
                timings.append(time.perf_counter() - started)
        await close_layer(layer)
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except asyncio.TimeoutError:
                worker.kill()
                await worker.wait()
    return 1 / statistics.median(timings)


# Driver


def alternate(
    label: str,
    repeats: int,
    run: Callable[[str], float],
    sides: tuple[str, str] = ("achannels", "channels_redis"),
) -> tuple[str, float, float]:
    results: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(repeats):
        for side in sides:
            results[side].append(run(side))
    ours, theirs = (statistics.median(results[side]) for side in sides)
    print(
        f"  {label}: {sides[0]} {ours:,.0f}/s, {sides[1]} {theirs:,.0f}/s",
        file=sys.stderr,
    )
    return label, ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument(
        "--redis",
        default=os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument(
        "--cluster", help="seed URLs of a Redis Cluster (comma-separated)"
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--kinds", default="core,pubsub")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--members", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner: Callable[[Any], Any] = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    if args.receiver:
        runner(receiver_main(args))
        return

    repeats, seconds, rounds = (3, 1.0, 10) if args.quick else (5, 3.0, 30)
    processes = 2 if args.quick else args.processes
    rows = []
    for kind in args.kinds.split(","):
        name = "RedisChannelLayer" if kind == "core" else "RedisPubSubChannelLayer"
        print(f"{name}:", file=sys.stderr)
        rows.append(
            (
                name,
                *alternate(
                    "send/receive round trips",
                    repeats,
                    lambda lib, kind=kind: runner(
                        round_trips(lib, kind, args.redis, seconds)
                    ),
                ),
            )
        )
        for members in (100, 1000):
            rows.append(
                (
                    name,
                    *alternate(
                        f"group_send to {members:,} members over {processes} "
                        "processes, end to end",
                        repeats,
                        lambda lib, kind=kind, members=members: runner(
                            group_fanout(
                                lib, kind, args.redis, members, processes, rounds
                            )
                        ),
                    ),
                )
            )
    print("| layer | scenario | achannels /s | channels_redis /s | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, label, ours, theirs in rows:
        print(
            f"| {name} | {label} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |"
        )
    if args.cluster:
        compare_cluster(args, runner, repeats, seconds, rounds, processes)


def compare_cluster(
    args: argparse.Namespace,
    runner: Callable[[Any], Any],
    repeats: int,
    seconds: float,
    rounds: int,
    processes: int,
) -> None:
    """achannels on the single Redis against achannels on the cluster."""
    urls = {"single": args.redis, "cluster": "cluster:" + args.cluster}
    rows = []
    for kind in args.kinds.split(","):
        name = "RedisChannelLayer" if kind == "core" else "RedisPubSubChannelLayer"
        print(f"{name}, single Redis against Redis Cluster:", file=sys.stderr)
        scenarios: list[tuple[str, Callable[[str], Any]]] = [
            (
                "send/receive round trips",
                lambda side, kind=kind: round_trips(
                    "achannels", kind, urls[side], seconds
                ),
            )
        ]
        for members in (100, 1000):
            scenarios.append(
                (
                    f"group_send to {members:,} members over {processes} "
                    "processes, end to end",
                    lambda side, kind=kind, members=members: group_fanout(
                        "achannels", kind, urls[side], members, processes, rounds
                    ),
                )
            )
        for label, scenario in scenarios:
            rows.append(
                (
                    name,
                    *alternate(
                        label,
                        repeats,
                        lambda side, scenario=scenario: runner(scenario(side)),
                        ("single", "cluster"),
                    ),
                )
            )
    print()
    print("| layer | scenario | single Redis /s | Redis Cluster /s | cluster/single |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, label, single, cluster in rows:
        print(
            f"| {name} | {label} | {single:,.0f} | {cluster:,.0f} | "
            f"{cluster / single:.2f}x |"
        )


if __name__ == "__main__":
    main()
