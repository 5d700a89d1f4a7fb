"""Consumer behaviour through the test communicators (no server)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from achannels.consumer import AsyncConsumer, SyncConsumer, concurrent, get_handler_name
from achannels.exceptions import AcceptConnection, DenyConnection, StopConsumer
from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from achannels.layers import InMemoryChannelLayer
from achannels.testing import (
    ApplicationCommunicator,
    HttpCommunicator,
    WebsocketCommunicator,
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "chat.message"}, "chat_message"),
        ({"type": "websocket.receive"}, "websocket_receive"),
    ],
)
def test_handler_name_replaces_dots(message: dict[str, Any], expected: str) -> None:
    assert get_handler_name(message) == expected


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ({}, "no 'type'"),
        ({"type": "_private.call"}, "leading underscore"),
        ({"type": ".x"}, "leading underscore"),
        ({"type": 3}, "int 'type'"),
        (["type", "x"], "list"),
    ],
)
def test_handler_name_rejects_bad_messages(message: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        get_handler_name(message)


def test_as_asgi_carries_class_and_initkwargs() -> None:
    class Named(AsyncWebsocketConsumer):
        """Docs of Named."""

    app = Named.as_asgi(greeting="hi")
    assert app.consumer_class is Named  # type: ignore[attr-defined]
    assert app.consumer_initkwargs == {"greeting": "hi"}  # type: ignore[attr-defined]
    assert app.__name__ == "Named"
    assert app.__doc__ == "Docs of Named."


async def test_one_instance_per_connection() -> None:
    instances: list[int] = []

    class Counting(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            instances.append(id(self))
            await self.accept()

    app = Counting.as_asgi()
    for _ in range(2):
        communicator = WebsocketCommunicator(app, "/")
        assert await communicator.connect() == (True, None)
        await communicator.disconnect()
    assert len(set(instances)) == 2


async def test_unknown_message_type_is_value_error() -> None:
    class Plain(AsyncConsumer):
        pass

    communicator = ApplicationCommunicator(Plain.as_asgi(), {"type": "websocket"})
    await communicator.send_input({"type": "never.handled"})
    with pytest.raises(ValueError, match=r"No handler for message type never\.handled"):
        await communicator.wait()


async def test_stop_consumer_ends_cleanly() -> None:
    class Stopper(AsyncConsumer):
        async def websocket_connect(self, message: dict[str, Any]) -> None:
            raise StopConsumer()

    communicator = ApplicationCommunicator(Stopper.as_asgi(), {"type": "websocket"})
    await communicator.send_input({"type": "websocket.connect"})
    await communicator.wait()


async def test_accept_and_deny_connection_exceptions() -> None:
    class Accepting(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            raise AcceptConnection()

    class Denying(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            raise DenyConnection()

    accepted = WebsocketCommunicator(Accepting.as_asgi(), "/")
    assert await accepted.connect() == (True, None)
    await accepted.disconnect()
    denied = WebsocketCommunicator(Denying.as_asgi(), "/")
    assert await denied.connect() == (False, 1000)


async def test_accept_with_subprotocol_and_headers() -> None:
    class Picky(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept("v2", headers=[(b"x-greeting", b"hello")])

    communicator = WebsocketCommunicator(
        Picky.as_asgi(), "/", subprotocols=["v1", "v2"]
    )
    assert await communicator.connect() == (True, "v2")
    assert communicator.response_headers == [(b"x-greeting", b"hello")]
    await communicator.disconnect()


async def test_deny_uses_http_response_when_supported() -> None:
    class Refusing(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.deny(
                401, b"log in first", headers=[(b"www-authenticate", b"Bearer")]
            )

    supported = WebsocketCommunicator(
        Refusing.as_asgi(), "/", extensions={"websocket.http.response": {}}
    )
    assert await supported.connect() == (False, 401)
    assert supported.http_response is not None
    assert supported.http_response["body"] == b"log in first"
    assert (b"www-authenticate", b"Bearer") in supported.http_response["headers"]
    unsupported = WebsocketCommunicator(Refusing.as_asgi(), "/")
    assert await unsupported.connect() == (False, 1000)


async def test_empty_text_frame_is_a_frame() -> None:
    received: list[Any] = []

    class Recording(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            received.append((text_data, bytes_data))
            await self.send(text_data=text_data, bytes_data=bytes_data)

    communicator = WebsocketCommunicator(Recording.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="")
    assert await communicator.receive_from() == ""
    await communicator.send_to(bytes_data=b"")
    assert await communicator.receive_from() == b""
    assert received == [("", None), (None, b"")]
    await communicator.disconnect()


def recording(app: Any, sent: list[dict[str, Any]]) -> Any:
    """``app`` with every event it sends also appended to ``sent``: what a
    server receives, including the close the communicator leaves out."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        async def record(message: dict[str, Any]) -> None:
            sent.append(dict(message))
            await send(message)

        await app(scope, receive, record)

    return wrapper


async def test_send_requires_text_or_bytes() -> None:
    class Empty(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send()

    sent: list[dict[str, Any]] = []
    communicator = WebsocketCommunicator(recording(Empty.as_asgi(), sent), "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    with pytest.raises(ValueError, match="one of bytes_data or text_data"):
        await communicator.wait()
    assert sent[-1] == {"type": "websocket.close", "code": 1011}


async def test_send_with_close_code() -> None:
    class Closing(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send(text_data="bye", close=4100)

    communicator = WebsocketCommunicator(Closing.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "bye"
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4100,
    }
    await communicator.disconnect()


async def test_json_consumer_round_trip_and_1007_on_bad_json() -> None:
    class Json(AsyncJsonWebsocketConsumer):
        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            await self.send_json({"got": content})

    sent: list[dict[str, Any]] = []
    communicator = WebsocketCommunicator(recording(Json.as_asgi(), sent), "/")
    await communicator.connect()
    await communicator.send_json_to({"a": [1, 2]})
    assert await communicator.receive_json_from() == {"got": {"a": [1, 2]}}
    await communicator.send_to(text_data="{not json")
    # The server gets a 1007 close; the test, as with Channels, the error.
    with pytest.raises(ValueError):
        await communicator.receive_output()
    assert sent[-1] == {"type": "websocket.close", "code": 1007}


async def test_json_consumer_rejects_binary_frame_with_1007() -> None:
    class Json(AsyncJsonWebsocketConsumer):
        pass

    sent: list[dict[str, Any]] = []
    communicator = WebsocketCommunicator(recording(Json.as_asgi(), sent), "/")
    await communicator.connect()
    await communicator.send_to(bytes_data=b"{}")
    with pytest.raises(ValueError, match="No text section"):
        await communicator.wait()
    assert sent[-1] == {"type": "websocket.close", "code": 1007}


async def test_sync_json_consumer_round_trip() -> None:
    class Json(JsonWebsocketConsumer):
        def receive_json(self, content: Any, **kwargs: Any) -> None:
            self.send_json(content * 2)

    communicator = WebsocketCommunicator(Json.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_json_to("ab")
    assert await communicator.receive_json_from() == "abab"
    await communicator.disconnect()


async def test_oversize_frame_closes_1009() -> None:
    class Small(AsyncWebsocketConsumer):
        max_message_size = 8

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send(text_data="ok")

    communicator = WebsocketCommunicator(Small.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="12345678")
    assert await communicator.receive_from() == "ok"
    await communicator.send_to(bytes_data=b"123456789")
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 1009,
    }
    await communicator.disconnect()


async def test_handler_error_closes_1011_and_disconnect_still_runs() -> None:
    codes: list[int] = []

    class Failing(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            raise RuntimeError("handler failed")

        async def disconnect(self, code: int) -> None:
            codes.append(code)

    sent: list[dict[str, Any]] = []
    communicator = WebsocketCommunicator(recording(Failing.as_asgi(), sent), "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    # The communicator shows the error, as with Channels; the server was
    # sent the 1011 close first.
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.receive_output()
    assert sent[-1] == {"type": "websocket.close", "code": 1011}
    assert codes == [1011]


async def test_disconnect_runs_after_error_when_websocket_connect_is_overridden() -> (
    None
):
    codes: list[int] = []

    class OwnHandshake(AsyncWebsocketConsumer):
        async def websocket_connect(self, message: dict[str, Any]) -> None:
            await self.accept()  # without super(): the accept alone connects

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            raise RuntimeError("handler failed")

        async def disconnect(self, code: int) -> None:
            codes.append(code)

    sent: list[dict[str, Any]] = []
    communicator = WebsocketCommunicator(recording(OwnHandshake.as_asgi(), sent), "/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="x")
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.wait()
    assert sent[-1] == {"type": "websocket.close", "code": 1011}
    assert codes == [1011]


async def test_disconnect_runs_once_on_client_close() -> None:
    codes: list[int] = []

    class Recording(AsyncWebsocketConsumer):
        async def disconnect(self, code: int) -> None:
            codes.append(code)

    communicator = WebsocketCommunicator(Recording.as_asgi(), "/")
    await communicator.connect()
    await communicator.disconnect(4005)
    assert codes == [4005]


async def test_sends_after_close_are_dropped() -> None:
    class Chatty(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.close(4000)
            await self.send(text_data="too late")

    communicator = WebsocketCommunicator(Chatty.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 4000,
    }
    assert await communicator.receive_nothing()
    await communicator.disconnect()


async def test_groups_attribute_joins_and_leaves(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Grouped(AsyncWebsocketConsumer):
        groups = ["news"]

        async def news_flash(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    communicator = WebsocketCommunicator(Grouped.as_asgi(), "/")
    await communicator.connect()
    await memory_layer.group_send("news", {"type": "news.flash", "text": "extra!"})
    assert await communicator.receive_from() == "extra!"
    await communicator.disconnect()
    assert "news" not in memory_layer.groups or not memory_layer.groups["news"]


async def test_groups_without_layer_is_clear_error() -> None:
    class Grouped(AsyncWebsocketConsumer):
        groups = ["news"]
        channel_layer_alias = "no-such-alias"

    communicator = WebsocketCommunicator(Grouped.as_asgi(), "/")
    with pytest.raises(Exception, match="BACKEND is unconfigured"):
        await communicator.connect()


async def test_client_and_layer_messages_never_overlap(
    memory_layer: InMemoryChannelLayer,
) -> None:
    active = 0
    overlaps = 0
    seen: list[str] = []

    class Serial(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            await self.send(text_data=self.channel_name)

        async def _work(self, label: str) -> None:
            nonlocal active, overlaps
            active += 1
            overlaps += active > 1
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            seen.append(label)
            active -= 1

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self._work(f"client {text_data}")

        async def layer_note(self, event: dict[str, Any]) -> None:
            await self._work(f"layer {event['n']}")
            if event["n"] == 9:
                await self.send(text_data="done")

    communicator = WebsocketCommunicator(Serial.as_asgi(), "/")
    await communicator.connect()
    channel = await communicator.receive_from()
    for n in range(10):
        await communicator.send_to(text_data=str(n))
        await memory_layer.send(str(channel), {"type": "layer.note", "n": n})
    assert await communicator.receive_from() == "done"
    await communicator.disconnect()
    assert overlaps == 0
    assert [s for s in seen if s.startswith("client")] == [
        f"client {n}" for n in range(10)
    ]
    assert [s for s in seen if s.startswith("layer")] == [
        f"layer {n}" for n in range(10)
    ]


async def test_concurrent_handler_does_not_block_later_frames() -> None:
    release = asyncio.Event()

    class Mixed(AsyncWebsocketConsumer):
        max_concurrent_handlers = 2

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            if text_data == "slow":
                await self.dispatch({"type": "slow.job"})
            else:
                await self.send(text_data=f"fast {text_data}")

        @concurrent
        async def slow_job(self, event: dict[str, Any]) -> None:
            await release.wait()
            await self.send(text_data="slow done")

    communicator = WebsocketCommunicator(Mixed.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="slow")
    await communicator.send_to(text_data="1")
    assert await communicator.receive_from() == "fast 1"
    release.set()
    assert await communicator.receive_from() == "slow done"
    await communicator.disconnect()


async def test_concurrent_handlers_are_cancelled_on_disconnect() -> None:
    cancelled = asyncio.Event()

    class Lingering(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.dispatch({"type": "forever"})
            await self.send(text_data="started")

        @concurrent
        async def forever(self, event: dict[str, Any]) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

    communicator = WebsocketCommunicator(Lingering.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="go")
    assert await communicator.receive_from() == "started"
    await communicator.disconnect()
    await asyncio.wait_for(cancelled.wait(), 1)


def test_concurrent_rejects_sync_consumers() -> None:
    with pytest.raises(TypeError, match="async"):

        class Bad(SyncConsumer):
            @concurrent  # type: ignore[type-var]
            def handler(self, message: dict[str, Any]) -> None: ...


async def test_sync_consumers_do_not_share_one_thread() -> None:
    both_inside = threading.Barrier(2, timeout=5)

    class Blocking(WebsocketConsumer):
        def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            # Two connections' handlers block here together; with one shared
            # thread (Channels) the barrier would time out.
            both_inside.wait()
            self.send(text_data="passed")

    first = WebsocketCommunicator(Blocking.as_asgi(), "/")
    second = WebsocketCommunicator(Blocking.as_asgi(), "/")
    await first.connect()
    await second.connect()
    await first.send_to(text_data="x")
    await second.send_to(text_data="x")
    assert await first.receive_from(timeout=5) == "passed"
    assert await second.receive_from(timeout=5) == "passed"
    await first.disconnect()
    await second.disconnect()


async def test_http_consumer_gathers_body_and_streams() -> None:
    disconnects = 0

    class Upper(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_headers(
                status=201, headers={b"content-type": b"text/plain"}
            )
            await self.send_body(body.upper()[:3], more_body=True)
            await self.send_body(body.upper()[3:])

        async def disconnect(self) -> None:
            nonlocal disconnects
            disconnects += 1

    communicator = HttpCommunicator(Upper.as_asgi(), "POST", "/", body=b"abcdef")
    response = await communicator.get_response()
    assert response["status"] == 201
    assert response["body"] == b"ABCDEF"
    assert response["headers"] == [(b"content-type", b"text/plain")]
    assert disconnects == 1


async def test_http_consumer_without_handle_is_not_implemented() -> None:
    communicator = HttpCommunicator(AsyncHttpConsumer.as_asgi(), "GET", "/")
    with pytest.raises(NotImplementedError):
        await communicator.get_response()


async def test_send_body_rejects_text() -> None:
    class Wrong(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_headers()
            await self.send_body("text")  # type: ignore[arg-type]

    communicator = HttpCommunicator(Wrong.as_asgi(), "GET", "/")
    with pytest.raises(TypeError, match="Body must be bytes, got str") as raised:
        await communicator.get_response()
    assert isinstance(raised.value, AssertionError)  # Channels asserts


@pytest.mark.parametrize(
    "message_type", ["dispatch", "send", "close", "accept", "channel_name"]
)
async def test_message_types_cannot_call_the_consumer_api(message_type: str) -> None:
    calls: list[str] = []

    class Guarded(AsyncWebsocketConsumer):
        async def close(
            self, code: int | bool | None = None, reason: str | None = None
        ) -> None:
            calls.append("close")
            await super().close(code, reason)

    communicator = ApplicationCommunicator(Guarded.as_asgi(), {"type": "websocket"})
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output() == {
        "type": "websocket.accept",
        "subprotocol": None,
    }
    await communicator.send_input({"type": message_type})
    with pytest.raises(ValueError, match="is not a message handler"):
        await communicator.wait()
    assert calls == []


async def test_user_handlers_named_like_nothing_in_the_api_still_dispatch() -> None:
    class Custom(AsyncConsumer):
        async def websocket_connect(self, message: dict[str, Any]) -> None:
            await self.send({"type": "websocket.accept"})

        async def notify(self, message: dict[str, Any]) -> None:
            await self.send({"type": "websocket.send", "text": "notified"})

        async def websocket_disconnect(self, message: dict[str, Any]) -> None:
            raise StopConsumer()

    communicator = ApplicationCommunicator(Custom.as_asgi(), {"type": "websocket"})
    await communicator.send_input({"type": "websocket.connect"})
    assert (await communicator.receive_output())["type"] == "websocket.accept"
    await communicator.send_input({"type": "notify"})
    assert await communicator.receive_output() == {
        "type": "websocket.send",
        "text": "notified",
    }
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait()


# The layer state tests read (Channels lists a consumer's channel at once)


class Quiet(AsyncWebsocketConsumer):
    """Never reads channel_name; handles one layer message type."""

    async def note(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


async def test_connected_consumer_channel_is_listed_and_receives(
    memory_layer: InMemoryChannelLayer,
) -> None:
    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/")
    assert (await communicator.connect())[0]
    # What Channels users' tests do: take the name from layer.channels.
    channel = next(iter(memory_layer.channels))
    await memory_layer.send(channel, {"type": "note", "text": "found you"})
    assert await communicator.receive_from() == "found you"
    await memory_layer.send(channel, {"type": "note", "text": "again"})
    assert await communicator.receive_from() == "again"
    await communicator.disconnect()
    assert memory_layer.channels == {}


async def test_bad_message_on_listed_channel_raises_channels_error(
    memory_layer: InMemoryChannelLayer,
) -> None:
    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/")
    assert (await communicator.connect())[0]
    channel = next(iter(memory_layer.channels))
    await memory_layer.send(channel, {"type": "_note", "text": "private"})
    with pytest.raises(
        ValueError, match=r"Malformed type in message \(leading underscore\)"
    ):
        await communicator.receive_from()


class ForeignLayer(InMemoryChannelLayer):
    """A layer that is not achannels' own: its receive() is its own code."""

    events: list[str]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.events = []

    async def receive(self, channel: str) -> dict[str, Any]:
        self.events.append("receive")
        return await super().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        self.events.append("group_add")
        await super().group_add(group, channel)


async def test_foreign_layer_is_received_from_before_connect_runs() -> None:
    from achannels.layers import channel_layers

    class Joins(AsyncWebsocketConsumer):
        groups = ["room"]

    layer = ForeignLayer()
    previous = channel_layers.set("default", layer)
    try:
        communicator = WebsocketCommunicator(Joins.as_asgi(), "/")
        assert (await communicator.connect())[0]
        # As with Channels: receive() at consumer start, then the handshake.
        assert layer.events[:2] == ["receive", "group_add"]
        await communicator.disconnect()
    finally:
        if previous is None:
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", previous)


# One consumer instance used as the application for several connections


class Remembers(AsyncWebsocketConsumer):
    groups = ["lobby"]

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=self.channel_name)

    async def lobby_news(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


async def test_consumer_instance_starts_each_connection_fresh(
    memory_layer: InMemoryChannelLayer,
) -> None:
    app = Remembers()
    names = []
    for round_ in range(3):
        communicator = WebsocketCommunicator(app, "/")
        assert await communicator.connect() == (True, None)
        name = await communicator.receive_from()
        names.append(name)
        assert list(memory_layer.groups["lobby"]) == [name]
        await memory_layer.group_send("lobby", {"type": "lobby.news", "text": "hi"})
        assert await communicator.receive_from() == "hi"
        # A frame after the previous connection's disconnect still dispatches.
        await communicator.send_to(text_data=f"round {round_}")
        assert await communicator.receive_nothing() is True
        await communicator.disconnect()
        assert memory_layer.groups == {}
    assert len(set(names)) == 3
