"""Presence: what a room of 10,000 costs, and what one connection pays.

For the in-memory layer and both Redis layers (Channels has no presence, so
there is nothing to compare against; the figures are absolute):

- track: 10,000 connections tracked in one room, one after another
  (tracks/s, and µs each);
- list: ``presence_list`` of that room (ms per call, entries/s);
- update and untrack: the same 10,000 (per second);
- heartbeat: one process's lease renewal in the 10,000-entry room (Redis:
  one script call per room, whatever its size; ms);
- per connection: the latency of ``self.presence.track`` + ``untrack`` on a
  quiet room (µs), and the memory one tracked entry takes (in-process
  bytes from tracemalloc; Redis bytes from ``MEMORY USAGE`` of the keys).

Prints a Markdown table; ``--json`` prints the figures as JSON instead.

    python benchmarks/bench_presence.py [--quick] [--redis URL] [--entries N]

To wire it into ``benchmarks/run.py``, call :func:`measure` (it returns the
figures as a dict, the same one ``--json`` prints) from a ``presence``
scenario and render ``table()`` in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
import tracemalloc
import uuid
from typing import Any

LAYERS = {
    "in-memory": "achannels.layers.InMemoryChannelLayer",
    "redis core": "achannels.layers.redis.RedisChannelLayer",
    "redis pub/sub": "achannels.layers.redis.RedisPubSubChannelLayer",
}


def make_layer(name: str, url: str) -> Any:
    module_name, _, class_name = LAYERS[name].rpartition(".")
    module = __import__(module_name, fromlist=[class_name])
    cls = getattr(module, class_name)
    if name == "in-memory":
        return cls()
    return cls(hosts=[url], prefix=f"benchpresence{uuid.uuid4().hex[:8]}")


def redis_up(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, OSError):
        return False
    finally:
        client.close()


def redis_bytes(url: str, prefix: str) -> int:
    """Bytes the keys under ``prefix`` take in Redis (MEMORY USAGE)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        total = 0
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            total += int(client.memory_usage(key, samples=0) or 0)
        return total
    finally:
        client.close()


async def measure_layer(name: str, url: str, entries: int) -> dict[str, float]:
    layer = make_layer(name, url)
    room = "room.big"
    channels = [f"bench.conn!{i}" for i in range(entries)]
    meta = {"name": "someone", "status": "online"}
    figures: dict[str, float] = {}
    try:
        # Warm up connections and scripts.
        await layer.presence_track("room.warm", "bench.warm!", "warm", meta)
        await layer.presence_untrack("room.warm", "bench.warm!")

        started = time.perf_counter()
        for i, channel in enumerate(channels):
            await layer.presence_track(room, channel, f"user{i}", meta)
        figures["track_per_s"] = entries / (time.perf_counter() - started)

        times = []
        for _ in range(5):
            started = time.perf_counter()
            listing = await layer.presence_list(room)
            times.append(time.perf_counter() - started)
            assert len(listing) == entries, len(listing)
        figures["list_ms"] = statistics.median(times) * 1000

        if name != "in-memory":
            store = layer._states.get().presence
            beats = []
            for _ in range(5):
                started = time.perf_counter()
                await store.renew()
                beats.append(time.perf_counter() - started)
            figures["heartbeat_ms"] = statistics.median(beats) * 1000

        started = time.perf_counter()
        for channel in channels:
            await layer.presence_update(room, channel, {"status": "away"})
        figures["update_per_s"] = entries / (time.perf_counter() - started)

        started = time.perf_counter()
        for channel in channels:
            await layer.presence_untrack(room, channel)
        figures["untrack_per_s"] = entries / (time.perf_counter() - started)

        # Memory, in a pass of its own (tracemalloc slows everything down).
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i, channel in enumerate(channels):
            await layer.presence_track(room, channel, f"user{i}", meta)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        figures["process_bytes_per_entry"] = held / entries
        if name != "in-memory":
            figures["redis_bytes_per_entry"] = redis_bytes(url, layer.prefix) / entries
        for channel in channels:
            await layer.presence_untrack(room, channel)

        # One connection's round trip on a quiet room.
        rounds = []
        for _ in range(200):
            started = time.perf_counter()
            await layer.presence_track("room.quiet", "bench.one!", "one", meta)
            await layer.presence_untrack("room.quiet", "bench.one!")
            rounds.append(time.perf_counter() - started)
        figures["track_untrack_us"] = statistics.median(rounds) * 1e6
    finally:
        await layer.flush()
        await layer.close()
    return figures


async def measure(url: str, entries: int = 10_000) -> dict[str, dict[str, float]]:
    """Return ``{layer name: {figure: value}}`` for every layer available."""
    results = {}
    for name in LAYERS:
        if name != "in-memory" and not redis_up(url):
            continue
        results[name] = await measure_layer(name, url, entries)
    return results


ROWS = [
    ("track_per_s", "track, 1 room of N (per s)", "{:,.0f}"),
    ("list_ms", "presence_list of N entries (ms)", "{:.1f}"),
    ("update_per_s", "update (per s)", "{:,.0f}"),
    ("untrack_per_s", "untrack (per s)", "{:,.0f}"),
    ("heartbeat_ms", "heartbeat of the room (ms)", "{:.2f}"),
    ("track_untrack_us", "one connection: track + untrack (µs)", "{:,.0f}"),
    ("process_bytes_per_entry", "process memory per entry (bytes)", "{:,.0f}"),
    ("redis_bytes_per_entry", "Redis memory per entry (bytes)", "{:,.0f}"),
]


def table(results: dict[str, dict[str, float]], entries: int) -> str:
    names = list(results)
    lines = [
        f"Presence, N = {entries:,} entries in one room",
        "",
        "| figure | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for key, label, fmt in ROWS:
        cells = [
            fmt.format(results[name][key]) if key in results[name] else "-"
            for name in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--redis",
        default=os.environ.get(
            "ACHANNELS_BENCH_REDIS_URL",
            os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
    )
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 entries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    entries = 1_000 if args.quick else args.entries
    results = asyncio.run(measure(args.redis, entries))
    print(json.dumps(results, indent=2) if args.json else table(results, entries))


if __name__ == "__main__":
    main()
