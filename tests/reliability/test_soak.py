"""Soak: many connections, and many messages nobody reads, leave nothing behind.

Two scenarios, each in a small size in the normal suite and at full size
behind ``@pytest.mark.soak`` (``make soak``, run by ``.ci/run``):

- Connection cycles through a real server: connect, join a group (shared
  with other clients), send to the group, receive it back, disconnect;
  16 clients at a time (10,000 cycles per phase at full size, on both
  uvicorn WebSocket implementations). The server's own numbers come from the
  app's ``introspect/`` route, after a garbage collection and glibc's
  ``malloc_trim``.
- Churn in one group (issue 12): batches of 50 clients join one group at
  once, each says something, waits until its own message comes back and
  closes while reading (as a browser does); 3,000 cycles per server at full
  size. No close handshake may take a second, and nothing may be left.
- Messages to channels nobody reads (1,000,000 at full size), half to 1,000
  fixed channels (bounded by ``capacity``), half to a new channel each
  (bounded by ``expiry``), in the test process.

Leaks are judged on two measures: RSS, which users see but which the
allocator blurs by a few MiB, and Python's count of allocated memory blocks
(``sys.getallocatedblocks()``), which is exact: one object kept per
connection or per message shows as thousands of blocks. The one thing
allowed to grow is the layer's cache of validated channel names, one block
per name and bounded (10,000 names, then it starts over).

Each test prints its figures; ``docs/reliability.md`` quotes them.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import sys
import time
from collections import deque
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from websockets.asyncio.client import connect

from achannels.exceptions import ChannelFull
from achannels.layers import InMemoryChannelLayer
from tests.reliability.test_close_handshake import close_reading
from tests.support.reliability import APP, TIMEOUT, report, wait_for_numbers
from tests.support.servers import SERVER_KINDS, RunningServer, serve

#: RSS a server may keep after a phase of cycles over its baseline.
RSS_TOLERANCE = 4 * 1024 * 1024
#: Bound of the in-memory layer's validated-name cache, in names (blocks).
NAME_CACHE = 10_000
#: Blocks that come and go with no relation to the work (interned strings,
#: the type attribute cache, asyncio's free lists).
BLOCK_SLACK = 500
WORKERS = 16
WARM_UP = 1000
GROUPS = 4
#: Message expiry of the served app: queue bookkeeping of messages a busy
#: consumer took from its queue rather than straight away lasts this long.
SERVER_EXPIRY = 2.0
MIB = 2**20


# Connection cycles


async def cycle_worker(server: RunningServer, worker: int, cycles: int) -> None:
    """``cycles`` times: connect to a group shared with other workers, say
    something, wait until it comes back, disconnect."""
    url = f"{server.ws_url}/ws/member/soak{worker % GROUPS}/"
    for index in range(cycles):
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            mine = f"{worker} {index}"
            await ws.send(mine)
            while await asyncio.wait_for(ws.recv(), TIMEOUT) != mine:
                pass  # another worker's message to the shared group


async def run_cycles(server: RunningServer, total: int) -> float:
    """Run ``total`` cycles over :data:`WORKERS` concurrent clients; return
    the seconds taken."""
    started = time.monotonic()
    per_worker, extra = divmod(total, WORKERS)
    await asyncio.gather(
        *(
            cycle_worker(server, worker, per_worker + (worker < extra))
            for worker in range(WORKERS)
        )
    )
    return time.monotonic() - started


async def settled_numbers(server: RunningServer, tasks: int | None) -> dict[str, Any]:
    """The server's numbers once every connection is gone and what expires
    has expired; with ``tasks=None``, once the task count held still for a
    second (servers finish closed connections' tasks at their own pace)."""
    await asyncio.sleep(SERVER_EXPIRY * 1.25)
    expected: dict[str, Any] = {
        "consumers": 0,
        "group_members": {},
        "channels": 0,
        "queued": 0,
    }
    if tasks is not None:
        expected["tasks"] = tasks
        return await wait_for_numbers(server, expected, timeout=3 * TIMEOUT)
    deadline = time.monotonic() + 3 * TIMEOUT
    numbers = await wait_for_numbers(server, expected)
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        again = await wait_for_numbers(server, expected)
        if again["tasks"] == numbers["tasks"]:
            return again
        numbers = again
    raise AssertionError(f"the server's task count never settled: {numbers}")


def describe(numbers: dict[str, Any]) -> str:
    return (
        f"tasks {numbers['tasks']}, consumers {numbers['consumers']}, "
        f"memberships {sum(numbers['group_members'].values())}, "
        f"channel queues {numbers['channels']}, "
        f"blocks {numbers['blocks']}, RSS {numbers['rss'] / MIB:.1f} MiB"
    )


async def soak_cycles(
    kind: str, cycles: int, phases: int, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"RELIABILITY_EXPIRY": str(SERVER_EXPIRY)}
    extra = ["--log-level", "warning"]
    if kind == "hypercorn":
        # Its connection tasks linger for the keep-alive time (5 s) after a
        # WebSocket closed; a shorter one lets the count settle sooner.
        extra += ["--keep-alive", "1"]
    with serve(APP, kind, env=env, extra_args=extra) as server:
        await run_cycles(server, WARM_UP)
        baseline = await settled_numbers(server, tasks=None)
        report(capsys, f"{kind} baseline after {WARM_UP} cycles: {describe(baseline)}")
        after_phases = []
        for phase in range(1, phases + 1):
            seconds = await run_cycles(server, cycles)
            # Same tasks, no consumer, membership or queue left.
            after = await settled_numbers(server, tasks=baseline["tasks"])
            after_phases.append(after)
            report(
                capsys,
                f"{kind} after phase {phase}: {cycles} cycles in {seconds:.1f}s "
                f"({cycles / seconds:.0f}/s): {describe(after)}; growth "
                f"{after['blocks'] - baseline['blocks']:+d} blocks, "
                f"{(after['rss'] - baseline['rss']) / 2**10:+.0f} KiB",
            )
            assert after["rss"] - baseline["rss"] < RSS_TOLERANCE, (baseline, after)
            # At most one block per connection: its name in the bounded cache.
            assert (
                after["blocks"] - baseline["blocks"]
                <= min(cycles * phase, NAME_CACHE) + BLOCK_SLACK
            ), (baseline, after)
        if phases > 1:
            # With the name cache full (NAME_CACHE cycles per phase), a
            # further phase adds nothing at all.
            first, last = after_phases[0], after_phases[-1]
            assert abs(last["blocks"] - first["blocks"]) <= BLOCK_SLACK, after_phases


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_connection_cycles_leave_no_trace(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await soak_cycles(kind, 600, 1, capsys)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["uvicorn-websockets-sansio", "uvicorn-wsproto"])
async def test_10000_connection_cycles_leave_no_trace(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await soak_cycles(kind, NAME_CACHE, 2, capsys)


# Churn: 50 clients at a time in one group

CHURN_CLIENTS = 50
#: Blocks a churn grows once, after its baseline (see soak_churn).
CHURN_ONE_TIME_GROWTH = 1_500
#: The slowest close handshake a churn may see.
CHURN_PROMPT = 1.0


async def churn_member(
    server: RunningServer, word: str, everyone_in: asyncio.Barrier
) -> float:
    async with asyncio.timeout(3 * TIMEOUT):
        ws = await connect(
            f"{server.ws_url}/ws/member/churn/",
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
        )
        await everyone_in.wait()
        await ws.send(word)
        while await ws.recv() != word:
            pass  # another member's message
        return await close_reading(ws)


async def soak_churn(
    kind: str, batches: int, warm_up: int, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"RELIABILITY_EXPIRY": str(SERVER_EXPIRY)}
    extra = ["--log-level", "warning"]
    if kind == "hypercorn":
        extra += ["--keep-alive", "1"]  # see soak_cycles
    with serve(APP, kind, env=env, extra_args=extra) as server:
        closes: list[float] = []

        async def batch(number: int) -> None:
            everyone_in = asyncio.Barrier(CHURN_CLIENTS)
            closes.extend(
                await asyncio.gather(
                    *(
                        churn_member(server, f"{number} {seat}", everyone_in)
                        for seat in range(CHURN_CLIENTS)
                    )
                )
            )

        # As for the cycles above, the baseline is taken once the allocator
        # has seen the peak the batches reach (50 sockets' buffers at once).
        for number in range(warm_up):
            await batch(-1 - number)
        baseline = await settled_numbers(server, tasks=None)
        closes.clear()
        started = time.monotonic()
        for number in range(1, batches + 1):
            await batch(number)
        seconds = time.monotonic() - started
        after = await settled_numbers(server, tasks=baseline["tasks"])
        cycles = batches * CHURN_CLIENTS
        closes.sort()
        report(
            capsys,
            f"{kind} churn, {CHURN_CLIENTS} clients per batch in one group: "
            f"{cycles} cycles in {seconds:.1f}s ({cycles / seconds:.0f}/s); close "
            f"handshake median {closes[len(closes) // 2] * 1000:.0f} ms, p99 "
            f"{closes[int(len(closes) * 0.99)] * 1000:.0f} ms, slowest "
            f"{closes[-1] * 1000:.0f} ms, {sum(c > CHURN_PROMPT for c in closes)} "
            f"over {CHURN_PROMPT:.0f}s; after: {describe(after)}; growth "
            f"{after['blocks'] - baseline['blocks']:+d} blocks, "
            f"{(after['rss'] - baseline['rss']) / 2**10:+.0f} KiB",
        )
        assert closes[-1] < CHURN_PROMPT, closes[-5:]
        assert after["rss"] - baseline["rss"] < RSS_TOLERANCE, (baseline, after)
        # One name per cycle (the bounded name cache), plus structures the
        # churn grows once to its peak after the baseline: measured at about
        # 1,000 blocks whether 2,000 or 6,000 cycles follow (+3,028 and
        # +7,015), so it is no leak; a leak of one block per cycle would
        # still break this bound at 3,000 cycles.
        assert (
            after["blocks"] - baseline["blocks"]
            <= min(cycles, NAME_CACHE) + CHURN_ONE_TIME_GROWTH + BLOCK_SLACK
        ), (baseline, after)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_churn_in_one_group_closes_promptly_and_leaves_no_trace(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await soak_churn(kind, 4, 1, capsys)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_3000_churn_cycles_in_one_group_leave_no_trace(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await soak_churn(kind, 60, 20, capsys)


# Messages nobody reads

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


def measure() -> tuple[int, int]:
    """This process's (allocated blocks, RSS) after a garbage collection,
    with glibc's free memory handed back so RSS counts what is in use."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
    return sys.getallocatedblocks(), int(psutil.Process().memory_info().rss)


CHANNELS, CAPACITY, EXPIRY = 1000, 10, 0.5
CHUNK = 1000
#: RSS growth allowed from the first round's end to any later round's end,
#: all messages expired. Keeping the messages would take ~300 bytes each
#: (300 MB for 1,000,000); a leak of 16 bytes per message fails the soak size.
#: Python's allocated blocks are the precise check.
UNREAD_RSS_TOLERANCE = 16 * MIB


class UnreadRun:
    """Sends to channels nobody reads and checks what the layer holds."""

    def __init__(self) -> None:
        self.layer = InMemoryChannelLayer(capacity=CAPACITY, expiry=EXPIRY)
        self.payload = {"type": "chat.message", "text": "x" * 200}
        self.fixed = [f"unread.fixed.{n}" for n in range(CHANNELS)]
        self.sent = self.full = 0
        self.peak_fixed = self.peak_new = self.peak_rss = 0

    async def round(self, messages: int) -> None:
        """Send ``messages``: half to the fixed channels, half to new ones;
        then wait for them to expire."""
        layer = self.layer
        started = self.sent
        # (time, messages sent to new channels by then), the last EXPIRY's.
        checkpoints: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        for chunk in range(messages // 2 // CHUNK):
            for _ in range(CHUNK):
                try:
                    await layer.send(self.fixed[self.sent % CHANNELS], self.payload)
                except ChannelFull:
                    self.full += 1
                await layer.send(f"unread.new.{self.sent}", self.payload)
                self.sent += 1
            now = time.monotonic()
            done = self.sent - started
            checkpoints.append((now, done))
            while len(checkpoints) > 1 and checkpoints[1][0] <= now - EXPIRY:
                checkpoints.popleft()
            if chunk % 10 == 0:
                pending_fixed = sum(
                    queue.qsize()
                    for name, queue in layer.channels.items()
                    if name.startswith("unread.fixed.")
                )
                pending_new = (
                    sum(queue.qsize() for queue in layer.channels.values())
                    - pending_fixed
                )
                # Capacity bounds the fixed channels...
                assert pending_fixed <= CHANNELS * CAPACITY
                # ...and expiry the new ones: only what was sent since the
                # newest checkpoint at least EXPIRY old can still be there.
                assert pending_new <= done - checkpoints[0][1]
                self.peak_fixed = max(self.peak_fixed, pending_fixed)
                self.peak_new = max(self.peak_new, pending_new)
                self.peak_rss = max(self.peak_rss, measure()[1])
                await asyncio.sleep(0)
        await asyncio.sleep(EXPIRY * 1.5)
        # As in Channels, a group_send (or receive) drops what expired.
        await layer.group_send("probe", {"type": "probe"})
        assert layer.channels == {}


async def soak_unread(
    rounds: int, per_round: int, capsys: pytest.CaptureFixture[str]
) -> None:
    run = UnreadRun()
    base_blocks, base_rss = measure()
    started = time.monotonic()
    await run.round(per_round)
    first_blocks, first_rss = measure()
    later: list[tuple[int, int]] = []
    for _ in range(rounds - 1):
        await run.round(per_round)
        later.append(measure())
    seconds = time.monotonic() - started
    messages = rounds * per_round
    report(
        capsys,
        f"{messages} messages to channels nobody reads, {rounds} rounds in "
        f"{seconds:.1f}s: {run.full} refused with ChannelFull; peak pending "
        f"{run.peak_fixed} in {CHANNELS} fixed channels (capacity {CAPACITY}) "
        f"and {run.peak_new} in new channels (expiry {EXPIRY}s); RSS "
        f"{base_rss / MIB:.1f} MiB before, peak {run.peak_rss / MIB:.1f} MiB, "
        f"{first_rss / MIB:.1f} MiB after round 1 expired, at most "
        f"{max(r for _, r in later) / MIB:.1f} MiB after later rounds; blocks "
        f"{base_blocks} before, {first_blocks} after round 1, "
        f"{min(b for b, _ in later)}..{max(b for b, _ in later)} after later rounds",
    )
    # Each fixed channel refuses all but CAPACITY messages per EXPIRY.
    assert run.full >= messages // 2 - CHANNELS * CAPACITY * (seconds / EXPIRY + rounds)
    # No Python object outlives its message: blocks only move with the
    # validated-name cache.
    for blocks, _ in later:
        assert abs(blocks - first_blocks) <= NAME_CACHE + BLOCK_SLACK, later
    # Once expired, later rounds leave RSS where the first one did, give or
    # take the allocator's fragmentation.
    assert max(r for _, r in later) - first_rss < UNREAD_RSS_TOLERANCE, (
        first_rss,
        later,
    )


async def test_unread_messages_are_bounded_by_capacity_and_expiry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await soak_unread(3, 50_000, capsys)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_1000000_unread_messages_are_bounded_by_capacity_and_expiry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await soak_unread(10, 100_000, capsys)
