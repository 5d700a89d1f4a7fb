"""InMemoryChannelLayer at scale: no operation scans every channel or group.

These are smoke guards, not benchmarks (see
``benchmarks/bench_memory_layer.py``): the same operations are timed on an
empty layer and on one with 100,000 live channels, in CPU time of this
process so other processes on a busy machine do not count. A scan of 100,000
channels per operation would make the ratio thousands; the bound is 20.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

import pytest

from achannels.exceptions import ChannelFull
from achannels.layers import InMemoryChannelLayer

ALIVE = 100_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_layer(clock: Clock, **options: float) -> InMemoryChannelLayer:
    layer = InMemoryChannelLayer(**options)  # type: ignore[arg-type]
    layer._clock = clock
    return layer


async def fill(layer: InMemoryChannelLayer, count: int) -> None:
    for number in range(count):
        await layer.send(f"idle.{number}", {"type": "idle"})


#: Most a 100,000-channel layer may be slower than an empty one.
MAX_SLOWDOWN = 20.0


async def timed_operations(layer: InMemoryChannelLayer) -> float:
    """CPU seconds for 1,000 round trips, 5 group_sends to 1,000 members and
    1,000 receives of what they sent."""
    for number in range(1000):
        await layer.group_add("big", f"member.{number}")
    start = time.process_time()
    for _ in range(1000):
        await layer.send("hot", {"type": "m", "text": "x"})
        await layer.receive("hot")
    for _ in range(5):
        await layer.group_send("big", {"type": "news"})
    for number in range(1000):
        assert await layer.receive(f"member.{number}") == {"type": "news"}
    return time.process_time() - start


async def test_send_receive_and_group_send_stay_fast_with_100k_channels() -> None:
    baseline = await timed_operations(make_layer(Clock()))

    clock = Clock()
    layer = make_layer(clock)
    await fill(layer, ALIVE)
    # Let every idle message's deadline pass halfway, and add groups too.
    clock.now = 30.0
    for number in range(1000):
        await layer.group_add(f"other.{number}", f"idle.{number}")
    assert len(layer.channels) == ALIVE
    loaded = await timed_operations(layer)
    assert loaded < MAX_SLOWDOWN * max(baseline, 0.01), (
        f"with {ALIVE:,} channels: {loaded:.3f}s CPU against {baseline:.3f}s empty"
    )


async def test_expiry_of_100k_channels_costs_only_what_expires() -> None:
    clock = Clock()
    layer = make_layer(clock, expiry=60)
    await fill(layer, ALIVE)
    clock.now = 30.0
    await layer.send("late", {"type": "m"})
    clock.now = 60.0  # every idle message is due, "late" is not
    start = time.process_time()
    await layer.send("trigger", {"type": "m"})
    elapsed = time.process_time() - start
    assert sorted(layer.channels) == ["late", "trigger"]
    # About 0.3 s here: O(n log n) for the n that expired. A quadratic
    # expiry would take minutes.
    assert elapsed < 5.0, f"expiring 100,000 messages took {elapsed:.2f}s CPU"


async def test_group_expiry_of_many_memberships_leaves_live_ones() -> None:
    clock = Clock()
    layer = make_layer(clock, group_expiry=100)
    for number in range(20_000):
        await layer.group_add(f"g.{number % 100}", f"c.{number}")
    clock.now = 50.0
    await layer.group_add("g.0", "fresh")
    clock.now = 100.0
    await layer.group_send("g.0", {"type": "m"})
    # Groups emptied by expiry stay as empty entries, as in Channels.
    assert {group: members for group, members in layer.groups.items() if members} == {
        "g.0": {"fresh": 50.0}
    }
    assert len(layer.groups) == 100
    assert list(layer.channels) == ["fresh"]


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _send_to_nobody(messages: int) -> tuple[int, int, int]:
    """Send ``messages`` to channels nobody reads while time runs; return
    (traced bytes before, at the end, most channels alive at once)."""
    clock = Clock()
    layer = make_layer(clock, expiry=1.0, capacity=10)
    tracemalloc.start()
    try:
        before = _traced_bytes()
        most = 0
        for number in range(messages):
            # 10,000 messages per simulated second: ~10,000 alive at once.
            clock.now = number / 10_000
            try:
                await layer.send(f"nobody.{number % 50_000}", {"type": "m", "n": 1})
            except ChannelFull:
                pass
            if number % 10_000 == 0:
                most = max(most, len(layer.channels))
        clock.now += 2
        await layer.send("last", {"type": "m"})
        after = _traced_bytes()
    finally:
        tracemalloc.stop()
    return before, after, most


async def test_memory_stays_bounded_when_nobody_reads() -> None:
    before, after, most = await _send_to_nobody(40_000)
    assert most <= 10_001
    assert after - before < 2_000_000, f"{after - before} bytes left behind"


@pytest.mark.soak
async def test_memory_stays_bounded_for_a_million_unread_messages() -> None:
    before, after, most = await _send_to_nobody(1_000_000)
    assert most <= 10_001
    assert after - before < 2_000_000, f"{after - before} bytes left behind"


async def test_full_channels_bound_memory_without_expiry() -> None:
    clock = Clock()
    layer = make_layer(clock, capacity=100)
    full = 0
    for number in range(200_000):
        try:
            await layer.send(f"unread.{number % 100}", {"type": "m"})
        except ChannelFull:
            full += 1
    assert full == 200_000 - 100 * 100
    assert sum(queue.qsize() for queue in layer.channels.values()) == 100 * 100


async def test_concurrent_receivers_under_load_lose_nothing() -> None:
    layer = InMemoryChannelLayer(capacity=100_000)
    received: list[int] = []
    all_received = asyncio.Event()

    async def consume() -> None:
        while True:
            message = await layer.receive("work")
            received.append(message["n"])
            if len(received) == 20_000:
                all_received.set()

    consumers = [asyncio.ensure_future(consume()) for _ in range(10)]
    try:
        for number in range(20_000):
            await layer.send("work", {"type": "m", "n": number})
            if number % 3 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(all_received.wait(), 10)
    finally:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    assert sorted(received) == list(range(20_000))
    assert not layer.channels
