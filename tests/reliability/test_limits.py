"""Limits: incoming frame size per consumer, channel capacity, and what
``group_send`` does with members at capacity."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import connect

from achannels.exceptions import ChannelFull
from achannels.layers import BaseChannelLayer, InMemoryChannelLayer
from tests.support.redis import require_redis, unique_prefix
from tests.support.reliability import APP, TIMEOUT, closed_with
from tests.support.servers import RunningServer, serve

LIMIT = 1024  # LimitedEcho.max_message_size


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind) as running:
        yield running


async def test_frames_over_max_message_size_close_1009_others_pass(
    server: RunningServer,
) -> None:
    url = f"{server.ws_url}/ws/limited/"
    async with connect(url, open_timeout=TIMEOUT) as ws:
        # At the limit: characters count, not bytes ("é" is two bytes).
        for frame in ("a" * LIMIT, "é" * LIMIT, b"\x00" * LIMIT):
            await ws.send(frame)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == frame
        for oversize in ("a" * (LIMIT + 1), b"\x00" * (LIMIT + 1)):
            async with connect(url, open_timeout=TIMEOUT) as big:
                await big.send(oversize)
                assert (await closed_with(big))[0] == 1009
        # The connection that stayed under the limit is still served.
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still here"
    output = await asyncio.to_thread(server.stop)
    # One warning per refused frame, naming the path, size and limit; no
    # traceback, since nothing failed.
    assert (
        output.count(
            f"closing WebSocket /ws/limited/ with 1009: frame of {LIMIT + 1} "
            f"exceeds max_message_size {LIMIT}"
        )
        == 2
    ), output
    assert "Traceback" not in output, output


@pytest.fixture(params=["memory", "redis"])
async def layer_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_layer(kind: str, **options: object) -> BaseChannelLayer:
    if kind == "memory":
        return InMemoryChannelLayer(**options)  # type: ignore[arg-type]
    from achannels.layers.redis import RedisChannelLayer

    return RedisChannelLayer(
        hosts=[require_redis()],
        prefix=unique_prefix(),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def small_layer(layer_kind: str) -> AsyncIterator[BaseChannelLayer]:
    """A layer of ``kind`` with capacity 3, and 1 for ``tiny.*`` channels."""
    layer = make_layer(layer_kind, capacity=3, channel_capacity={"tiny.*": 1})
    try:
        yield layer
    finally:
        if layer_kind == "redis":
            await layer.flush()
        await layer.close()


async def test_send_beyond_capacity_raises_channel_full_naming_channel(
    small_layer: BaseChannelLayer,
) -> None:
    for index in range(3):
        await small_layer.send("inbox", {"type": "m", "n": index})
    with pytest.raises(ChannelFull, match=r"'inbox'.* 3 messages"):
        await small_layer.send("inbox", {"type": "m", "n": 3})
    # Taking one makes room for one; order is kept.
    first = await asyncio.wait_for(small_layer.receive("inbox"), TIMEOUT)
    assert first["n"] == 0
    await small_layer.send("inbox", {"type": "m", "n": 4})
    with pytest.raises(ChannelFull):
        await small_layer.send("inbox", {"type": "m", "n": 5})
    received = [
        (await asyncio.wait_for(small_layer.receive("inbox"), TIMEOUT))["n"]
        for _ in range(3)
    ]
    assert received == [1, 2, 4]


async def test_channel_capacity_pattern_applies_from_first_send(
    small_layer: BaseChannelLayer,
) -> None:
    await small_layer.send("tiny.inbox", {"type": "m"})
    with pytest.raises(ChannelFull, match=r"'tiny.inbox'.* 1 messages"):
        await small_layer.send("tiny.inbox", {"type": "m"})


async def test_group_send_skips_full_members_and_reports_them(
    layer_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = make_layer(layer_kind, capacity=2)
    if isinstance(layer, InMemoryChannelLayer):
        layer.full_log_interval = 3600
    try:
        await layer.group_add("room", "asleep")
        await layer.group_add("room", "awake")
        with caplog.at_level(logging.INFO, logger="achannels"):
            for index in range(50):
                await layer.group_send("room", {"type": "m", "n": index})
                message = await asyncio.wait_for(layer.receive("awake"), TIMEOUT)
                # The awake member gets every message, in order.
                assert message["n"] == index
        if layer_kind == "memory":
            # 48 skips, one WARNING (the first skip; the rest wait for the
            # next interval), naming the group.
            reports = [r for r in caplog.records if "group_send skipped" in r.message]
            assert [r.levelname for r in reports] == ["WARNING"]
            assert "'room'" in reports[0].message
        else:
            # channels_redis' INFO line for each of the 48 skipping sends.
            reports = [r for r in caplog.records if "over capacity" in r.message]
            assert {(r.levelname, r.message) for r in reports} == {
                ("INFO", "1 of 2 channels over capacity in group room")
            }
            assert len(reports) == 48
        # What the asleep member holds is its capacity: the oldest two.
        held = [
            (await asyncio.wait_for(layer.receive("asleep"), TIMEOUT))["n"]
            for _ in range(2)
        ]
        assert held == [0, 1]
    finally:
        if layer_kind == "redis":
            await layer.flush()
        await layer.close()


async def test_group_send_full_report_counts_every_skip_since_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer(capacity=1)
    layer.full_log_interval = 0.2
    await layer.group_add("room", "asleep")
    with caplog.at_level(logging.WARNING, logger="achannels"):
        await layer.group_send("room", {"type": "m"})  # fills it
        await layer.group_send("room", {"type": "m"})  # skip 1: reported now
        for _ in range(30):  # skips 2..31: counted, not reported
            await layer.group_send("room", {"type": "m"})
        await asyncio.sleep(0.25)
        await layer.group_send("room", {"type": "m"})  # skip 32: report of 31
    counts = [
        int(re.findall(r"skipped (\d+)", r.message)[0])
        for r in caplog.records
        if "group_send skipped" in r.message
    ]
    assert counts == [1, 31]
