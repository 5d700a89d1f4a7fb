"""A client that stops reading hurts nobody else and holds bounded memory.

The stalled client completes the handshake and never reads again. Its
consumer blocks in ``send`` once the socket buffers fill (every server
applies back-pressure), its layer channel fills to ``capacity`` and
``group_send`` then skips it; the message expiry finally drops what it never
took and takes the channel out of its groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.reliability import (
    APP,
    TIMEOUT,
    StalledClient,
    fetch_json,
    report,
    server_numbers,
    wait_for_numbers,
)
from tests.support.servers import RunningServer, serve

CAPACITY = 100
FRAME = 32 * 1024
#: Growth allowed between two rounds of broadcasts; a round that was kept
#: for the stalled client would add ``messages * FRAME`` (19 MB).
RSS_SLACK = 4 * 1024 * 1024


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    env = {"RELIABILITY_CAPACITY": str(CAPACITY), "RELIABILITY_EXPIRY": "5"}
    with serve(APP, server_kind, env=env) as running:
        yield running


async def receive_in_order(ws: ClientConnection, count: int) -> None:
    for index in range(count):
        frame = await ws.recv()
        assert isinstance(frame, str)
        assert frame.startswith(f"{index} "), (index, frame[:20])


async def broadcast_round(
    server: RunningServer, fast: ClientConnection, count: int
) -> float:
    """Broadcast ``count`` frames to the group; return the slowest
    ``group_send`` after checking the fast member got them all in order."""
    reader = asyncio.ensure_future(receive_in_order(fast, count))
    try:
        result = await fetch_json(
            f"{server.url}/broadcast/room/?count={count}&size={FRAME}&pause=0.002"
        )
        await asyncio.wait_for(reader, 3 * TIMEOUT)
    finally:
        reader.cancel()
    assert result["sent"] == count
    slowest: float = result["slowest"]
    return slowest


async def test_stalled_member_never_blocks_group_send_and_memory_stays_bounded(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    member = "/ws/member/room/"
    async with connect(
        f"{server.ws_url}{member}", open_timeout=TIMEOUT, max_size=None
    ) as fast:
        stalled = StalledClient(server.host, server.port, member)
        await stalled.open()
        try:
            await wait_for_numbers(server, {"group_members": {"room": 2}})

            slowest = await broadcast_round(server, fast, 200)
            first = await server_numbers(server)
            slowest = max(slowest, await broadcast_round(server, fast, 600))
            second = await server_numbers(server)

            report(
                capsys,
                f"{server.kind}: stalled member; slowest group_send "
                f"{slowest * 1000:.2f} ms; pending {first['queued']} after 200 "
                f"frames, {second['queued']} after 600 more (capacity "
                f"{CAPACITY}); RSS {first['rss'] / 2**20:.1f} MiB -> "
                f"{second['rss'] / 2**20:.1f} MiB while "
                f"{600 * FRAME / 2**20:.0f} MiB went to the group",
            )
            # The caller never waited on the stalled member.
            assert slowest < 0.1, slowest
            # What waits for the stalled member is at most its capacity.
            assert first["queued"] <= CAPACITY, first
            assert second["queued"] <= CAPACITY, second
            # 19 MB more went to the group; memory did not follow it.
            assert second["rss"] - first["rss"] < RSS_SLACK, (first, second)
        finally:
            stalled.close()

        # The stalled consumer ends with its socket, and the layer lets go
        # of it: membership, queue and consumer object.
        await wait_for_numbers(
            server,
            {"group_members": {"room": 1}, "queued": 0, "channels": 1, "consumers": 1},
            timeout=3 * TIMEOUT,
        )
        # The fast member is still served.
        await broadcast_round(server, fast, 10)
    await wait_for_numbers(server, {"group_members": {}, "channels": 0, "consumers": 0})


#: Measured with granian 2.8: a consumer's 32 KiB frames reach its client
#: only in bursts while the paced broadcast request runs in the same worker,
#: so even a member with no stalled peer falls 100 (its capacity) behind and
#: group_send skips it for the last ~60 of 300 frames. Not the stalled
#: client's doing: without one the fast members miss the same frames.
GRANIAN_BURSTS = pytest.mark.xfail(
    reason="granian delivers a consumer's large frames in bursts during a paced "
    "broadcast: fast members overflow their capacity too",
    raises=TimeoutError,
    strict=False,
)


async def test_group_send_from_a_member_is_not_held_up_by_a_stalled_one(
    server: RunningServer, request: pytest.FixtureRequest
) -> None:
    if server.kind == "granian":
        request.applymarker(GRANIAN_BURSTS)
    member = "/ws/member/chat/"
    stalled = StalledClient(server.host, server.port, member)
    await stalled.open()
    try:
        async with (
            connect(f"{server.ws_url}{member}", open_timeout=TIMEOUT) as alice,
            connect(f"{server.ws_url}{member}", open_timeout=TIMEOUT) as bob,
        ):
            await wait_for_numbers(server, {"group_members": {"chat": 3}})
            # Fill the stalled member's socket and channel first.
            await fetch_json(
                f"{server.url}/broadcast/chat/?count={CAPACITY * 3}&size={FRAME}"
                "&pause=0.002"
            )
            for ws in (alice, bob):
                await asyncio.wait_for(receive_in_order(ws, CAPACITY * 3), TIMEOUT)
            # Members talking among themselves are unaffected.
            for index in range(20):
                await alice.send(f"{index} from alice")
                for ws in (alice, bob):
                    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    assert frame == f"{index} from alice"
    finally:
        stalled.close()
