"""Bad input gets a clear error or a proper close code, never a crash.

Frames from clients go through real servers; messages, names and values that
reach a channel layer are checked against the in-memory and the Redis layer
alike, since users switch between them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from achannels.exceptions import MessageTooLarge
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from achannels.layers import BaseChannelLayer, InMemoryChannelLayer, channel_layers
from achannels.testing import WebsocketCommunicator
from tests.support.redis import require_redis, unique_prefix
from tests.support.reliability import APP, TIMEOUT, closed_with
from tests.support.servers import RunningServer, serve

# Bad frames through real servers


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind) as running:
        yield running


SERVER_ERROR_RECORD = {
    "uvicorn-websockets-sansio": "Exception in ASGI application",
    "uvicorn-wsproto": "Exception in ASGI application",
    "hypercorn": "Error in ASGI Framework",
    "granian": "Application callable raised an exception",
}


@pytest.mark.parametrize("route", ["ws/json/", "ws/sync-json/"])
async def test_bad_json_frames_close_1007_and_leave_others_untouched(
    server: RunningServer, route: str
) -> None:
    # Not JSON, a binary frame, and an empty text frame (which is not JSON).
    bad_frames: list[str | bytes] = ["{not json", b'{"binary": "frame"}', ""]
    async with connect(f"{server.ws_url}/{route}", open_timeout=TIMEOUT) as bystander:
        for frame in bad_frames:
            async with connect(f"{server.ws_url}/{route}", open_timeout=TIMEOUT) as ws:
                await ws.send(frame)
                assert (await closed_with(ws))[0] == 1007
        # The connection that behaved is unaffected, and new ones work.
        await bystander.send('{"still": "here"}')
        assert await asyncio.wait_for(bystander.recv(), TIMEOUT) == (
            '{"echo": {"still": "here"}}'
        )
    async with connect(f"{server.ws_url}/{route}", open_timeout=TIMEOUT) as fresh:
        await fresh.send("[1, 2]")
        assert await asyncio.wait_for(fresh.recv(), TIMEOUT) == '{"echo": [1, 2]}'
    output = await asyncio.to_thread(server.stop)
    # One error record per bad frame, each naming the ValueError Channels
    # raises; the process itself shut down cleanly.
    assert output.count(SERVER_ERROR_RECORD[server.kind]) == len(bad_frames), output
    assert output.count("JSONDecodeError: ") == 2, output
    assert output.count("ValueError: No text section for incoming WebSocket") == 1
    assert server.proc.returncode in (0, -15), output


async def test_json_errors_still_raise_value_error_under_test_communicator() -> None:
    # Channels users' tests expect the ValueError and no frame before it;
    # the 1007 close reaches real clients only (test above).
    class Echo(AsyncJsonWebsocketConsumer):
        pass

    communicator = WebsocketCommunicator(Echo.as_asgi(), "/ws/")
    assert (await communicator.connect())[0] is True
    await communicator.send_to(text_data="{oops")
    with pytest.raises(ValueError, match="Expecting property name"):
        await communicator.receive_output()

    binary = WebsocketCommunicator(Echo.as_asgi(), "/ws/")
    assert (await binary.connect())[0] is True
    await binary.send_to(bytes_data=b"{}")
    with pytest.raises(ValueError, match="No text section"):
        await binary.receive_output()


# Messages that reach a consumer through its channel


class Listener(AsyncWebsocketConsumer):
    """Publishes its channel name; has a private method a bad type could aim at."""

    private_calls: list[Any] = []

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=self.channel_name)

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def _secret(self, event: Any) -> None:
        self.private_calls.append(event)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"text": "no type"}, "Incoming message has no 'type' attribute"),
        ({"type": "_secret"}, "Malformed type in message (leading underscore)"),
        ({"type": "._secret"}, "Malformed type in message (leading underscore)"),
        ({"type": "no.such.handler"}, "No handler for message type no.such.handler"),
        # Attributes that are not methods are not handlers either.
        ({"type": "scope"}, "No handler for message type scope"),
        ({"type": "channel.name"}, "No handler for message type channel.name"),
        ({"type": "groups"}, "No handler for message type groups"),
        ({"type": 42}, "it must be a string"),
        ({"type": None}, "it must be a string"),
    ],
)
@pytest.mark.usefixtures("memory_layer")
async def test_bad_layer_message_is_a_clear_value_error_others_carry_on(
    message: dict[str, Any], error: str
) -> None:
    Listener.private_calls.clear()
    victim = WebsocketCommunicator(Listener.as_asgi(), "/ws/")
    other = WebsocketCommunicator(Listener.as_asgi(), "/ws/")
    assert (await victim.connect())[0] and (await other.connect())[0]
    victim_channel = await victim.receive_from()
    other_channel = await other.receive_from()
    layer = channel_layers["default"]
    await layer.send(victim_channel, message)
    # (Through a server the client also gets a 1011 close: tests/core.)
    with pytest.raises(ValueError, match=re.escape(error)):
        await victim.receive_output()
    assert Listener.private_calls == []
    # The neighbour on the same layer carries on.
    await layer.send(other_channel, {"type": "chat.message", "text": "fine"})
    assert await other.receive_from() == "fine"
    await other.disconnect()


class SyncListener(WebsocketConsumer):
    def connect(self) -> None:
        self.accept()
        self.send(text_data=self.channel_name)


@pytest.mark.usefixtures("memory_layer")
async def test_sync_consumer_non_method_type_is_value_error_too() -> None:
    communicator = WebsocketCommunicator(SyncListener.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    channel = await communicator.receive_from()
    await channel_layers["default"].send(channel, {"type": "scope"})
    with pytest.raises(ValueError, match="No handler for message type scope"):
        await communicator.receive_output()


# Names and messages at the layer


@pytest.fixture(params=["memory", "redis"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[BaseChannelLayer]:
    if request.param == "memory":
        yield InMemoryChannelLayer()
        return
    from achannels.layers.redis import RedisChannelLayer

    redis_layer = RedisChannelLayer(
        hosts=[require_redis()], prefix=unique_prefix(), max_message_size=2000
    )
    try:
        yield redis_layer
    finally:
        await redis_layer.flush()
        await redis_layer.close()


BAD_NAMES: list[object] = [
    None,
    42,
    b"bytes",
    ["list"],
    "",
    "a" * 100,
    "a!b!c",
    "*",
    "group*",
    "room\n",
    "room\nFLUSHALL",
    "room\r\n",
    "tab\there",
    "spa ce",
    "colon:key",
    "{hash}tag",
    "../up",
    "nul\x00byte",
    "ünïcödé",
    "١٢٣",  # Arabic-Indic digits: \d outside ASCII
    "\uff46\uff55\uff4c\uff4c",  # fullwidth "full": \w outside ASCII
]


def _mentions(error: BaseException, name: object) -> bool:
    text = str(error)
    if isinstance(name, str):
        return repr(name)[:30] in text
    return type(name).__name__ in text


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_channel_name_is_type_error_saying_why(
    layer: BaseChannelLayer, name: object
) -> None:
    for call in (
        layer.send(name, {"type": "x"}),  # type: ignore[arg-type]
        layer.receive(name),  # type: ignore[arg-type]
        layer.group_add("fine", name),  # type: ignore[arg-type]
        layer.group_discard("fine", name),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError) as raised:
            await asyncio.wait_for(call, TIMEOUT)
        assert _mentions(raised.value, name), raised.value


@pytest.mark.parametrize("name", [*BAD_NAMES, "with!bang", "dot!"], ids=repr)
async def test_bad_group_name_is_type_error_saying_why(
    layer: BaseChannelLayer, name: object
) -> None:
    for call in (
        layer.group_add(name, "fine"),  # type: ignore[arg-type]
        layer.group_discard(name, "fine"),  # type: ignore[arg-type]
        layer.group_send(name, {"type": "x"}),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError) as raised:
            await asyncio.wait_for(call, TIMEOUT)
        assert _mentions(raised.value, name), raised.value


@pytest.mark.parametrize(
    "message", ["text", b"bytes", ["list"], ("tuple",), 7, None], ids=repr
)
async def test_non_dict_message_is_type_error_naming_its_type(
    layer: BaseChannelLayer, message: object
) -> None:
    await layer.group_add("room", "some.channel")
    for call in (
        layer.send("some.channel", message),  # type: ignore[arg-type]
        layer.group_send("room", message),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match=type(message).__name__):
            await asyncio.wait_for(call, TIMEOUT)
    # Nothing half-sent: the channel is still empty.
    await layer.send("some.channel", {"type": "after"})
    received = await asyncio.wait_for(layer.receive("some.channel"), TIMEOUT)
    assert received == {"type": "after"}


class Opaque:
    """A value neither msgpack nor a deep copy should carry."""

    def __reduce__(self) -> Any:
        raise TypeError("Opaque objects cannot be copied")


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"type": "x", "payload": {"when": Opaque()}}, "when"),
        ({"type": "x", "items": [1, 2, Opaque()]}, "items"),
        ({"type": "x", "handle": Opaque()}, "handle"),
    ],
)
async def test_unserialisable_value_is_refused_on_send_naming_the_key(
    layer: BaseChannelLayer, message: dict[str, Any], key: str
) -> None:
    await layer.group_add("room", "some.channel")
    for call in (
        layer.send("some.channel", message),
        layer.group_send("room", message),
    ):
        with pytest.raises(TypeError) as raised:
            await asyncio.wait_for(call, TIMEOUT)
        assert key in str(raised.value), raised.value
        assert "Opaque" in str(raised.value), raised.value


async def test_oversize_message_raises_message_too_large_with_size_and_limit() -> None:
    from achannels.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(
        hosts=[require_redis()], prefix=unique_prefix(), max_message_size=2000
    )
    try:
        await layer.group_add("room", "some.channel")
        for call in (
            layer.send("some.channel", {"type": "x", "blob": "a" * 5000}),
            layer.group_send("room", {"type": "x", "blob": "a" * 5000}),
        ):
            with pytest.raises(MessageTooLarge) as raised:
                await asyncio.wait_for(call, TIMEOUT)
            size = int(re.findall(r"(\d+) bytes", str(raised.value))[0])
            assert size > 5000
            assert "2000" in str(raised.value)
        # A message under the limit still goes through.
        await layer.send("some.channel", {"type": "x", "blob": "a" * 100})
        received = await asyncio.wait_for(layer.receive("some.channel"), TIMEOUT)
        assert received["blob"] == "a" * 100
    finally:
        await layer.flush()
        await layer.close()
