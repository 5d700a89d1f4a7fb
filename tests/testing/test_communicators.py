"""Test communicators: Channels' API, return values, timeouts, no leaked tasks."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

from achannels._types import Message, Receive, Scope, Send
from achannels.consumer import AsyncConsumer
from achannels.exceptions import DenyConnection
from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path
from achannels.testing import (
    ApplicationCommunicator,
    HttpCommunicator,
    WebsocketCommunicator,
)


@pytest.fixture(autouse=True)
async def no_task_outlives_the_test() -> AsyncIterator[None]:
    """Every test here must end with no task but its own running."""
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftover == []


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept (with the first offered subprotocol), echo frames, end on
    disconnect, close with 4000 on the frame "close"."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            subprotocols = scope["subprotocols"]
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": subprotocols[0] if subprotocols else None,
                    "headers": [(b"x-hello", b"1")],
                }
            )
        elif message["type"] == "websocket.receive":
            if message.get("text") == "close":
                await send({"type": "websocket.close", "code": 4000})
            elif message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        elif message["type"] == "websocket.disconnect":
            return


async def ws_silent(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


# --- WebsocketCommunicator ----------------------------------------------------


async def test_websocket_scope_is_built_like_a_server_would() -> None:
    communicator = WebsocketCommunicator(
        ws_echo,
        "/chat/caf%C3%A9 room/?a=1&b=%20",
        headers=[(b"Origin", b"http://x"), ("X-Str", "v")],
        subprotocols=["graphql-ws"],
        spec_version="2.3",
        extensions={"websocket.http.response": {}},
    )
    assert communicator.scope == {
        "type": "websocket",
        "path": "/chat/café room/",
        "raw_path": b"/chat/caf%C3%A9%20room/",
        "query_string": b"a=1&b=%20",
        "headers": [(b"origin", b"http://x"), (b"x-str", b"v")],
        "subprotocols": ["graphql-ws"],
        "spec_version": "2.3",
        "extensions": {"websocket.http.response": {}},
    }


def test_websocket_communicator_rejects_non_str_path() -> None:
    with pytest.raises(TypeError, match="Expected str"):
        WebsocketCommunicator(ws_echo, b"/ws/")  # type: ignore[arg-type]


async def test_connect_returns_true_and_chosen_subprotocol() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/", subprotocols=["p1", "p2"])
    assert await communicator.connect() == (True, "p1")
    assert communicator.response_headers == [(b"x-hello", b"1")]
    await communicator.disconnect()
    assert communicator.future.done()


async def test_connect_returns_false_and_close_code_then_sends_nothing() -> None:
    after: list[Message] = []

    async def deny(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4403})
        after.append(await receive())

    communicator = WebsocketCommunicator(deny, "/")
    assert await communicator.connect() == (False, 4403)
    # As in Channels: connect() tells the application nothing more...
    assert await communicator.receive_nothing() is True
    assert after == []
    # ...and the test's disconnect() delivers the disconnect.
    await communicator.disconnect(code=1006)
    assert after == [{"type": "websocket.disconnect", "code": 1006}]


async def test_connect_close_needs_no_disconnect_handler() -> None:
    # A consumer with only websocket_connect (Channels tests have them):
    # connect() must not make it dispatch a websocket.disconnect it cannot
    # handle.
    class CloseOnly(AsyncConsumer):
        async def websocket_connect(self, message: Message) -> None:
            await self.send({"type": "websocket.close", "code": 4001})

    async with WebsocketCommunicator(CloseOnly.as_asgi(), "/") as communicator:
        assert await communicator.connect() == (False, 4001)


async def test_close_without_code_reads_as_1000() -> None:
    async def deny(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    assert await WebsocketCommunicator(deny, "/").connect() == (False, 1000)


async def test_http_denial_returns_status_and_keeps_the_response() -> None:
    async def deny(scope: Scope, receive: Receive, send: Send) -> None:
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send(
            {"type": "websocket.http.response.body", "body": b"go ", "more_body": True}
        )
        await send({"type": "websocket.http.response.body", "body": b"away"})

    communicator = WebsocketCommunicator(
        deny, "/", extensions={"websocket.http.response": {}}
    )
    assert await communicator.connect() == (False, 403)
    assert communicator.http_response == {
        "status": 403,
        "headers": [(b"content-type", b"text/plain")],
        "body": b"go away",
    }


async def test_text_bytes_and_empty_frames_round_trip() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/")
    await communicator.connect()
    await communicator.send_to(text_data="")
    assert await communicator.receive_from() == ""
    await communicator.send_to(bytes_data=b"")
    assert await communicator.receive_from() == b""
    await communicator.send_to(text_data="héllo")
    assert await communicator.receive_from() == "héllo"
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_from() == b"\x00\xff"
    await communicator.disconnect()


async def test_json_round_trip() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/")
    await communicator.connect()
    await communicator.send_json_to({"a": [1, 2, None], "b": "ü"})
    assert await communicator.receive_json_from() == {"a": [1, 2, None], "b": "ü"}
    await communicator.send_to(bytes_data=b"{}")
    with pytest.raises(AssertionError, match="not a text frame"):
        await communicator.receive_json_from()
    await communicator.disconnect()


async def test_send_to_needs_exactly_one_payload_of_the_right_type() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/")
    with pytest.raises(ValueError, match="exactly one"):
        await communicator.send_to()
    with pytest.raises(ValueError, match="exactly one"):
        await communicator.send_to(text_data="a", bytes_data=b"a")
    with pytest.raises(TypeError, match="text_data must be a str"):
        await communicator.send_to(text_data=b"a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes_data must be bytes"):
        await communicator.send_to(bytes_data="a")  # type: ignore[arg-type]
    # Channels asserts here: tests written for it catch AssertionError.
    with pytest.raises(AssertionError):
        await communicator.send_to()
    with pytest.raises(AssertionError):
        await communicator.send_to(bytes_data="a")  # type: ignore[arg-type]


async def test_receive_from_a_close_is_an_assertion_error() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/")
    await communicator.connect()
    await communicator.send_to(text_data="close")
    with pytest.raises(AssertionError, match=r"Expected type 'websocket\.send'"):
        await communicator.receive_from()
    await communicator.disconnect()


async def test_receive_from_times_out_with_asyncio_timeout_error_and_cancels() -> None:
    communicator = WebsocketCommunicator(ws_silent, "/")
    await communicator.connect()
    with pytest.raises(asyncio.TimeoutError):
        await communicator.receive_from(timeout=0.05)
    assert communicator.future.cancelled()
    # As with asgiref's communicator (Channels' tests rely on it), what
    # follows a timeout that cancelled the application raises CancelledError.
    with pytest.raises(asyncio.CancelledError):
        await communicator.disconnect()
    with pytest.raises(asyncio.CancelledError):
        await communicator.receive_from()
    await communicator.wait()  # asgiref: a cancelled application has ended


async def test_receive_nothing_true_when_silent_false_when_output_waits() -> None:
    communicator = WebsocketCommunicator(ws_echo, "/")
    await communicator.connect()
    assert await communicator.receive_nothing() is True
    await communicator.send_to(text_data="x")
    assert await communicator.receive_nothing() is False
    assert await communicator.receive_from() == "x"
    await communicator.disconnect()


async def test_receive_nothing_wakes_as_soon_as_output_arrives() -> None:
    release = asyncio.Event()

    async def late(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "late"})

    communicator = ApplicationCommunicator(late, {"type": "test"})
    started = time.monotonic()
    waiting = asyncio.ensure_future(communicator.receive_nothing(timeout=30))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(waiting, 10) is False
    assert time.monotonic() - started < 10
    assert await communicator.receive_output() == {"type": "late"}
    await communicator.wait()


async def test_disconnect_sends_code_and_waits_for_the_end() -> None:
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        got.append(await receive())

    communicator = WebsocketCommunicator(app, "/")
    await communicator.connect()
    await communicator.disconnect(code=4001)
    assert got == [{"type": "websocket.disconnect", "code": 4001}]
    assert communicator.future.done()


async def test_disconnect_cancels_an_application_that_does_not_end() -> None:
    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await asyncio.Event().wait()

    communicator = WebsocketCommunicator(stubborn, "/")
    await communicator.connect()
    # asgiref's wait() (so Channels' disconnect()) cancels it and returns.
    await communicator.disconnect(timeout=0.05)
    assert communicator.future.cancelled()


# --- ApplicationCommunicator --------------------------------------------------


async def test_application_exception_is_raised_at_once_not_after_timeout() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("kaput")

    communicator = ApplicationCommunicator(broken, {"type": "test"})
    await communicator.send_input({"type": "go"})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="kaput"):
        await communicator.receive_output(timeout=30)
    assert time.monotonic() - started < 10
    with pytest.raises(RuntimeError, match="kaput"):
        await communicator.wait()


async def test_output_sent_before_a_failure_comes_before_the_failure() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "first"})
        raise RuntimeError("then fail")

    communicator = ApplicationCommunicator(app, {"type": "test"})
    assert await communicator.receive_output() == {"type": "first"}
    with pytest.raises(RuntimeError, match="then fail"):
        await communicator.receive_output()


async def test_application_that_ended_without_output_times_out_at_once() -> None:
    async def quiet(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    communicator = ApplicationCommunicator(quiet, {"type": "test"})
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await communicator.receive_output(timeout=30)
    assert time.monotonic() - started < 10
    assert await communicator.receive_nothing() is True


async def test_wait_cancels_a_running_application_at_its_timeout() -> None:
    communicator = ApplicationCommunicator(ws_silent, {"type": "websocket"})
    await communicator.wait(timeout=0.05)
    assert communicator.future.cancelled()


async def test_application_runs_without_the_tests_context_vars() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("from the test")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "value", "value": var.get("unset")})

    communicator = ApplicationCommunicator(app, {"type": "test"})
    assert await communicator.receive_output() == {"type": "value", "value": "unset"}
    await communicator.wait()


async def test_async_with_cancels_the_application_on_exit() -> None:
    async with ApplicationCommunicator(
        ws_silent, {"type": "websocket"}
    ) as communicator:
        await communicator.send_input({"type": "websocket.connect"})
        assert await communicator.receive_output() == {"type": "websocket.accept"}
    assert communicator.future.cancelled()


# --- HttpCommunicator ---------------------------------------------------------


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    request = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"x-method", scope["method"].encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"got:", "more_body": True})
    await send(
        {"type": "http.response.body", "body": request["body"], "more_body": True}
    )
    await send({"type": "http.response.body", "body": scope["query_string"]})


async def test_http_communicator_returns_status_headers_and_joined_body() -> None:
    communicator = HttpCommunicator(http_app, "post", "/a%20b/?q=1", body=b"payload")
    assert communicator.scope == {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/a b/",
        "raw_path": b"/a%20b/",
        "query_string": b"q=1",
        "headers": [],
    }
    assert await communicator.get_response() == {
        "status": 201,
        "headers": [(b"x-method", b"POST")],
        "body": b"got:payloadq=1",
    }


async def test_http_get_response_sends_no_disconnect_after_the_response() -> None:
    # Channels' HttpCommunicator sends the request and reads the response,
    # nothing more: a consumer with only http_request must not be handed an
    # http.disconnect it has no handler for.
    class RequestOnly(AsyncConsumer):
        async def http_request(self, message: Message) -> None:
            await self.send({"type": "http.response.start", "status": 200})
            await self.send({"type": "http.response.body", "body": b"ok"})

    async with HttpCommunicator(RequestOnly.as_asgi(), "GET", "/") as communicator:
        assert await communicator.get_response() == {
            "status": 200,
            "headers": [],
            "body": b"ok",
        }
        assert await communicator.receive_nothing() is True
        assert not communicator.future.done()


def test_http_communicator_body_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="body must be bytes"):
        HttpCommunicator(http_app, "GET", "/", body="text")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):  # Channels asserts
        HttpCommunicator(http_app, "GET", "/", body="text")  # type: ignore[arg-type]


async def test_http_get_response_times_out() -> None:
    async def hang(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await asyncio.Event().wait()

    communicator = HttpCommunicator(hang, "GET", "/")
    with pytest.raises(asyncio.TimeoutError):
        await communicator.get_response(timeout=0.05)


# --- With consumers -----------------------------------------------------------


class RoomConsumer(AsyncWebsocketConsumer):
    """Joins the room named in the URL; relays frames to the whole room."""

    disconnect_codes: ClassVar[list[int]] = []

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        if self.room == "private":
            raise DenyConnection()
        if self.room == "teapot":
            await self.deny(status=418, body=b"short and stout")
            return
        await self.channel_layer.group_add(self.room, self.channel_name)  # type: ignore[union-attr]
        await self.accept(
            self.scope["subprotocols"][0] if self.scope["subprotocols"] else None
        )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.channel_layer.group_send(  # type: ignore[union-attr]
            self.room, {"type": "room.message", "text": text_data}
        )

    async def room_message(self, event: Message) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        RoomConsumer.disconnect_codes.append(code)
        if self.room not in ("private", "teapot"):
            await self.channel_layer.group_discard(self.room, self.channel_name)  # type: ignore[union-attr]


class EchoJson(JsonWebsocketConsumer):
    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"echo": content, "kind": self.scope["url_route"]["kwargs"]})


class Streamer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_headers(status=200, headers=[(b"content-type", b"text/plain")])
        for part in (b"one,", b"two,", body):
            await self.send_body(part, more_body=True)
        await self.send_body(b"")


@pytest.fixture
def in_memory_layer() -> Iterator[None]:
    channel_layers.configure(
        {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
    )
    RoomConsumer.disconnect_codes.clear()
    yield
    channel_layers.configure(None)


def application() -> ProtocolTypeRouter:
    return ProtocolTypeRouter(
        {
            "websocket": URLRouter(
                [
                    path("room/<slug:room>/", RoomConsumer.as_asgi()),
                    path("json/", EchoJson.as_asgi(), kwargs={"mode": "sync"}),
                ]
            ),
            "http": URLRouter([path("stream/", Streamer.as_asgi())]),
        }
    )


@pytest.mark.usefixtures("in_memory_layer")
async def test_group_broadcast_between_two_consumers() -> None:
    app = application()
    ann = WebsocketCommunicator(app, "/room/lobby/", subprotocols=["chat"])
    bob = WebsocketCommunicator(app, "/room/lobby/")
    assert await ann.connect() == (True, "chat")
    assert await bob.connect() == (True, None)
    await ann.send_to(text_data="hi all")
    assert await ann.receive_from() == "hi all"
    assert await bob.receive_from() == "hi all"
    await ann.send_to(text_data="")
    assert await bob.receive_from() == ""
    await ann.disconnect(code=4321)
    await bob.disconnect()
    assert sorted(RoomConsumer.disconnect_codes) == [1000, 4321]


@pytest.mark.usefixtures("in_memory_layer")
async def test_consumer_denials_read_as_close_code_or_http_status() -> None:
    app = application()
    denied = WebsocketCommunicator(app, "/room/private/")
    assert await denied.connect() == (False, 1000)
    teapot = WebsocketCommunicator(
        app, "/room/teapot/", extensions={"websocket.http.response": {}}
    )
    assert await teapot.connect() == (False, 418)
    assert teapot.http_response is not None
    assert teapot.http_response["body"] == b"short and stout"
    # The HTTP denial ended its consumer; the close waits for disconnect().
    assert RoomConsumer.disconnect_codes == [1006]
    assert teapot.future.done() and not denied.future.done()
    await denied.disconnect(code=1006)
    assert RoomConsumer.disconnect_codes == [1006, 1006]


async def test_sync_json_consumer_round_trip_with_route_kwargs() -> None:
    communicator = WebsocketCommunicator(application(), "/json/")
    assert await communicator.connect() == (True, None)
    await communicator.send_json_to({"n": 1})
    assert await communicator.receive_json_from() == {
        "echo": {"n": 1},
        "kind": {"mode": "sync"},
    }
    await communicator.disconnect()


async def test_http_consumer_streamed_response_is_joined() -> None:
    communicator = HttpCommunicator(application(), "POST", "/stream/", body=b"three")
    assert await communicator.get_response() == {
        "status": 200,
        "headers": [(b"content-type", b"text/plain")],
        "body": b"one,two,three",
    }
    assert communicator.future.done()


async def test_unrouted_path_raises_from_connect() -> None:
    communicator = WebsocketCommunicator(application(), "/nowhere/")
    with pytest.raises(ValueError, match="No route found for path 'nowhere/'"):
        await communicator.connect()


# --- Handler errors, as a Channels test sees them ------------------------------


class FailsOnFrame(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        raise ValueError(f"cannot handle {text_data!r}")


class JsonEcho(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


async def test_handler_error_raises_from_receive_from_without_a_close_frame() -> None:
    # Through a server the client gets a 1011 close (tests/core); a Channels
    # test expects the handler's error here, and no frame before it.
    communicator = WebsocketCommunicator(FailsOnFrame.as_asgi(), "/")
    assert await communicator.connect() == (True, None)
    await communicator.send_to(text_data="boom")
    with pytest.raises(ValueError, match="cannot handle 'boom'"):
        await communicator.receive_from()


async def test_bad_json_raises_value_error_from_receive_from() -> None:
    communicator = WebsocketCommunicator(JsonEcho.as_asgi(), "/")
    assert await communicator.connect() == (True, None)
    await communicator.send_json_to({"ok": 1})
    assert await communicator.receive_json_from() == {"ok": 1}
    await communicator.send_to(bytes_data=b"w\0\0\0")
    with pytest.raises(ValueError):
        await communicator.receive_from()


async def test_sync_json_bad_frame_raises_value_error_from_wait() -> None:
    communicator = WebsocketCommunicator(application(), "/json/")
    assert await communicator.connect() == (True, None)
    await communicator.send_to(text_data="{not json")
    with pytest.raises(ValueError):
        await communicator.wait()
    assert communicator.output_queue.empty()
