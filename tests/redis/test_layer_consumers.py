"""Consumers on the Redis layers: a group message starts its handler in the
pub/sub layer's subscription reader, or the core layer's pump, when the
consumer is idle (``_dispatch``'s run-here path); what a consumer observes
must be what it observes on the in-memory layer, which always wakes the
consumer's own listener task."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.layers import InMemoryChannelLayer
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from achannels.testing import WebsocketCommunicator
from tests.support.layers import as_default
from tests.support.redis import require_redis, unique_prefix

pytestmark = pytest.mark.redis

CROWD = 50

_seen: contextvars.ContextVar[int] = contextvars.ContextVar("seen", default=0)


class Member(AsyncWebsocketConsumer):
    """Reports, per group message, what its handler observed."""

    groups = ["crowd"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy = False

    async def crowd_message(self, event: dict[str, Any]) -> None:
        assert not self.busy, "two handlers of one consumer overlapped"
        self.busy = True
        task = asyncio.current_task()
        # Handlers of one consumer share its listener's context.
        _seen.set(_seen.get() + 1)
        event["text"] += "!"  # each member has its own copy
        if event["block"]:
            await asyncio.sleep(0.001)
        same_task = asyncio.current_task() is task
        self.busy = False
        await self.send(text_data=f"{event['text']} {_seen.get()} {same_task}")

    async def crowd_timeout(self, event: dict[str, Any]) -> None:
        # A timeout cancels the handler's own task, wherever it started.
        timed_out = True
        with anyio.move_on_after(0.01):
            await asyncio.sleep(5)
            timed_out = False
        if sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(5)
            except TimeoutError:
                pass
            else:
                timed_out = False
        await self.send(text_data=f"timed out {timed_out}")

    async def crowd_leave(self, event: dict[str, Any]) -> None:
        # Leaves (and joins another group) while the group is being sent to.
        await self.channel_layer.group_discard("crowd", self.channel_name)
        await self.channel_layer.group_add("others", self.channel_name)
        await self.send(text_data="left")

    async def crowd_relay(self, event: dict[str, Any]) -> None:
        # A group_send from a handler that may itself run in a group_send.
        await self.channel_layer.group_send(
            "others", {"type": "crowd.message", "text": "relayed", "block": False}
        )

    async def crowd_fail(self, event: dict[str, Any]) -> None:
        if event["block"]:
            await asyncio.sleep(0)
        raise ValueError("handler failed")


class Relay(Member):
    groups = ["relay"]


@pytest.fixture(params=["memory", "redis", "redis-pubsub"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        layer: Any = InMemoryChannelLayer()
    elif request.param == "redis":
        layer = RedisChannelLayer(hosts=[require_redis()], prefix=unique_prefix())
    else:
        layer = RedisPubSubChannelLayer(hosts=[require_redis()], prefix=unique_prefix())
    try:
        with as_default(layer):
            yield layer
    finally:
        if request.param != "memory":
            await layer.close()


async def _crowd(size: int) -> list[WebsocketCommunicator]:
    members = [WebsocketCommunicator(Member.as_asgi(), "/") for _ in range(size)]
    # Generous: 50 group_adds at once on a busy machine.
    for connected, _ in await asyncio.gather(*(m.connect(10) for m in members)):
        assert connected
    return members


async def test_group_messages_reach_every_member_in_order_once_each(
    layer: Any,
) -> None:
    members = await _crowd(CROWD)
    sent = [(f"m{n}", n % 3 == 1) for n in range(12)]
    for text, block in sent:
        await layer.group_send(
            "crowd", {"type": "crowd.message", "text": text, "block": block}
        )
    expected = [f"{text}! {n} True" for n, (text, _) in enumerate(sent, 1)]
    for member in members:
        got = [await member.receive_from(5) for _ in sent]
        assert got == expected
        assert await member.receive_nothing(0.01)
    for member in members:
        await member.disconnect()


async def test_timeouts_in_a_group_handler_cancel_only_the_handler(
    layer: Any,
) -> None:
    members = await _crowd(5)
    await layer.group_send("crowd", {"type": "crowd.timeout"})
    after = {"type": "crowd.message", "text": "after", "block": False}
    await layer.group_send("crowd", after)
    for member in members:
        assert await member.receive_from(5) == "timed out True"
        assert await member.receive_from(5) == "after! 1 True"
        await member.disconnect()


@pytest.mark.parametrize("block", [False, True], ids=["at-once", "after-await"])
async def test_failing_group_handler_ends_its_consumer_with_the_error(
    layer: Any, block: bool
) -> None:
    members = await _crowd(3)
    await layer.group_send("crowd", {"type": "crowd.fail", "block": block})
    for member in members:
        with pytest.raises(ValueError, match="handler failed"):
            await member.receive_output(5)


async def test_group_handlers_may_leave_and_send_during_a_group_send(
    layer: Any,
) -> None:
    members = await _crowd(CROWD)
    # Every member leaves "crowd" for "others" while "crowd" is sent to.
    await layer.group_send("crowd", {"type": "crowd.leave"})
    for member in members:
        assert await member.receive_from(5) == "left"
    await layer.group_send(
        "crowd", {"type": "crowd.message", "text": "gone", "block": False}
    )
    # A relay, sent from a group handler, reaches all of "others".
    relay = WebsocketCommunicator(Relay.as_asgi(), "/")
    assert (await relay.connect())[0]
    await layer.group_send("relay", {"type": "crowd.relay"})
    for member in members:
        assert await member.receive_from(5) == "relayed! 1 True"
        assert await member.receive_nothing(0.01)
    for member in [*members, relay]:
        await member.disconnect()
