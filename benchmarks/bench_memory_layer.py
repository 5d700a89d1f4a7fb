"""Compare achannels' InMemoryChannelLayer with Channels' on one machine.

Run: ``.venv/bin/python benchmarks/bench_memory_layer.py [--others N]``

Each case runs for about ``--seconds`` of this process's CPU time (at least
one round) per layer and reports operations per CPU second and the ratio
achannels / Channels; CPU time keeps other load on a shared machine out of
the figures (everything here runs on one thread). ``--others``
channels, each holding one message, stay alive during every case: Channels
scans all of them on each receive and group_send, achannels does not.

Cases:
- ``send+receive``: ``await send(c, m); await receive(c)`` in one task.
- ``ping-pong``: a consumer task waits on a channel and replies on another.
- ``group_send N``: one ``group_send`` to N members, then every member
  receives it (achannels copies on receive, Channels on send, so both halves
  count).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

MESSAGE = {"type": "chat.message", "text": "hello", "user": 42}


async def timed(
    seconds: float, round_: Callable[[], Awaitable[int]]
) -> tuple[float, int]:
    """Run ``round_`` until ``seconds`` of CPU time pass; return (ops/s, ops)."""
    done = 0
    start = time.process_time()
    while True:
        done += await round_()
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed, done


async def populate(layer: Any, others: int) -> None:
    for number in range(others):
        await layer.send(f"idle.{number}", {"type": "idle"})


async def bench_send_receive(layer: Any, seconds: float) -> float:
    async def round_() -> int:
        for _ in range(100):
            await layer.send("bench.c", MESSAGE)
            await layer.receive("bench.c")
        return 100

    return (await timed(seconds, round_))[0]


async def bench_ping_pong(layer: Any, seconds: float) -> float:
    async def echo() -> None:
        while True:
            message = await layer.receive("bench.ping")
            await layer.send("bench.pong", message)

    task = asyncio.ensure_future(echo())
    try:

        async def round_() -> int:
            for _ in range(100):
                await layer.send("bench.ping", MESSAGE)
                await layer.receive("bench.pong")
            return 100

        return (await timed(seconds, round_))[0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def bench_group_send(layer: Any, members: int, seconds: float) -> float:
    names = [f"member.{number}" for number in range(members)]
    for name in names:
        await layer.group_add("bench.group", name)

    async def round_() -> int:
        await layer.group_send("bench.group", MESSAGE)
        for name in names:
            await layer.receive(name)
        return members

    try:
        return (await timed(seconds, round_))[0]
    finally:
        for name in names:
            await layer.group_discard("bench.group", name)


async def run_layer(
    factory: Callable[[], Any], others: int, seconds: float
) -> dict[str, float]:
    layer = factory()
    await populate(layer, others)
    results = {
        "send+receive": await bench_send_receive(layer, seconds),
        "ping-pong": await bench_ping_pong(layer, seconds),
    }
    for members in (100, 1000):
        results[f"group_send {members} (deliveries)"] = await bench_group_send(
            layer, members, seconds
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    from achannels.layers import InMemoryChannelLayer

    def ours() -> Any:
        return InMemoryChannelLayer(capacity=1000)

    try:
        from channels.layers import InMemoryChannelLayer as ChannelsLayer
    except ImportError:
        ChannelsLayer = None

    print(f"{args.others} other channels alive, ~{args.seconds}s per case")
    mine = asyncio.run(run_layer(ours, args.others, args.seconds))
    theirs: dict[str, float] = {}
    if ChannelsLayer is not None:
        theirs = asyncio.run(
            run_layer(lambda: ChannelsLayer(capacity=1000), args.others, args.seconds)
        )
    print(f"{'case':32} {'achannels/s':>14} {'channels/s':>14} {'ratio':>8}")
    for case, value in mine.items():
        other = theirs.get(case)
        ratio = f"{value / other:7.1f}x" if other else "-"
        shown = f"{other:14,.0f}" if other else f"{'-':>14}"
        print(f"{case:32} {value:14,.0f} {shown} {ratio:>8}")


if __name__ == "__main__":
    main()
