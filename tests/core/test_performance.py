"""What the hot-path optimisations promise, and what they must not break.

See docs/performance.md for the profiles behind them:

- a consumer listens on its layer channel only once its ``channel_name`` was
  read (before that nobody can know the name, so nothing can arrive), so a
  consumer that never uses the layer runs no extra task;
- reading ``channel_name`` anywhere (a handler, a sync handler's worker
  thread, ``groups``) starts the listener, and nothing sent to the channel
  is lost;
- a failure while handling a layer message still ends the consumer, with
  that error;
- a consumer that ends leaves no messages queued in its dead channel;
- handler names are cached per message type without relaxing any check;
- an idle WebSocket consumer stays within a memory budget per connection.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import tracemalloc
from typing import Any

import pytest

from achannels.consumer import AsyncConsumer, get_handler_name
from achannels.exceptions import StopConsumer
from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from achannels.layers import InMemoryChannelLayer
from achannels.routing import URLRouter, path
from achannels.testing import ApplicationCommunicator, WebsocketCommunicator

TIMEOUT = 5


class Echo(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class Announcer(AsyncWebsocketConsumer):
    """Tells the client its channel name on request; relays ``note.message``."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=self.channel_name)

    async def note_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class SyncAnnouncer(WebsocketConsumer):
    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        self.send(text_data=self.channel_name)

    def note_message(self, event: dict[str, Any]) -> None:
        self.send(text_data=event["text"])


async def test_consumer_that_never_reads_channel_name_runs_no_extra_task(
    memory_layer: InMemoryChannelLayer,
) -> None:
    before = len(asyncio.all_tasks())
    communicator = WebsocketCommunicator(Echo.as_asgi(), "/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="hi")
    assert await communicator.receive_from() == "hi"
    # The communicator's own task for the application, nothing more.
    assert len(asyncio.all_tasks()) == before + 1
    # Its channel is listed, as in Channels, without a task receiving on it.
    (channel,) = memory_layer.channels
    assert memory_layer.channels[channel].empty()
    await communicator.disconnect()
    assert memory_layer.channels == {}


@pytest.mark.parametrize("consumer", [Announcer, SyncAnnouncer])
async def test_channel_name_read_in_a_handler_receives_layer_messages(
    memory_layer: InMemoryChannelLayer, consumer: type[AsyncConsumer]
) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="who are you?")
    name = await communicator.receive_from()
    assert isinstance(name, str)
    for n in range(3):
        await memory_layer.send(name, {"type": "note.message", "text": f"note {n}"})
    for n in range(3):
        assert await communicator.receive_from() == f"note {n}"
    await communicator.disconnect()


async def test_messages_sent_before_the_listener_starts_wait_in_the_layer(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Early(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            # Sent to our own channel before anything listens on it.
            await self.channel_layer.send(  # type: ignore[union-attr]
                self.channel_name, {"type": "note.message", "text": "early"}
            )
            await self.accept()

        async def note_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    communicator = WebsocketCommunicator(Early.as_asgi(), "/")
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "early"
    await communicator.disconnect()


async def test_group_members_from_groups_attribute_receive_group_messages(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Member(AsyncWebsocketConsumer):
        groups = ["room"]

        async def room_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    app = URLRouter([path("room/", Member.as_asgi())])
    members = [WebsocketCommunicator(app, "/room/") for _ in range(3)]
    for member in members:
        assert (await member.connect())[0]
    await memory_layer.group_send("room", {"type": "room.message", "text": "all"})
    for member in members:
        assert await member.receive_from() == "all"
    for member in members:
        await member.disconnect()
    assert memory_layer.groups == {}


async def test_error_in_a_layer_message_handler_ends_the_consumer_with_it(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Fragile(AsyncConsumer):
        async def probe_start(self, message: dict[str, Any]) -> None:
            await self.send({"type": "probe.name", "name": self.channel_name})

        async def probe_boom(self, message: dict[str, Any]) -> None:
            raise RuntimeError("boom from the layer")

    communicator = ApplicationCommunicator(Fragile(), {"type": "probe"})
    await communicator.send_input({"type": "probe.start"})
    name = (await communicator.receive_output(TIMEOUT))["name"]
    await memory_layer.send(name, {"type": "probe.boom"})
    with pytest.raises(RuntimeError, match="boom from the layer"):
        await communicator.wait(TIMEOUT)


async def test_stop_consumer_from_a_layer_message_ends_the_consumer_cleanly(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Stoppable(AsyncConsumer):
        async def probe_start(self, message: dict[str, Any]) -> None:
            await self.send({"type": "probe.name", "name": self.channel_name})

        async def probe_stop(self, message: dict[str, Any]) -> None:
            raise StopConsumer()

    communicator = ApplicationCommunicator(Stoppable(), {"type": "probe"})
    await communicator.send_input({"type": "probe.start"})
    name = (await communicator.receive_output(TIMEOUT))["name"]
    await memory_layer.send(name, {"type": "probe.stop"})
    await communicator.wait(TIMEOUT)  # returns: ended without an error


async def test_consumer_ending_during_a_broadcast_leaves_no_queued_messages(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Member(AsyncWebsocketConsumer):
        groups = ["burst"]

        async def burst_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    communicator = WebsocketCommunicator(Member.as_asgi(), "/")
    assert (await communicator.connect())[0]
    # Messages arrive while the disconnect is being handled: some are handed
    # to the listener, some queue up behind it.
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    for n in range(20):
        await memory_layer.group_send(
            "burst", {"type": "burst.message", "text": str(n)}
        )
    await communicator.wait(TIMEOUT)
    # Anything still addressed to the dead channel is dropped by the next
    # layer call that expires; what matters is that nothing stays queued.
    assert all(not queue.messages for queue in memory_layer.channels.values())


def test_cached_handler_names_keep_every_check() -> None:
    assert get_handler_name({"type": "chat.message"}) == "chat_message"
    assert get_handler_name({"type": "chat.message"}) == "chat_message"
    for bad in (
        ["type", "chat.message"],
        {"type": ["chat.message"]},
        {"kind": "chat.message"},
        {"type": "_chat.message"},
    ):
        with pytest.raises(ValueError):
            get_handler_name(bad)  # type: ignore[arg-type]


class _Server:
    """Just enough of a server to hold ``count`` idle connections."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks: list[asyncio.Task[None]] = []
        self.inboxes: list[asyncio.Queue[dict[str, Any]]] = []

    async def open(self, count: int) -> None:
        accepted = 0
        all_in = asyncio.get_running_loop().create_future()

        async def send(message: dict[str, Any]) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted += 1
                if accepted == count:
                    all_in.set_result(None)

        scope = {"type": "websocket", "path": "/", "headers": [], "subprotocols": []}
        for _ in range(count):
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            inbox.put_nowait({"type": "websocket.connect"})
            self.inboxes.append(inbox)
            self.tasks.append(
                asyncio.ensure_future(self.app(dict(scope), inbox.get, send))
            )
        await asyncio.wait_for(all_in, TIMEOUT)

    async def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(asyncio.gather(*self.tasks), TIMEOUT)


async def _bytes_per_connection(app: Any, count: int = 300) -> float:
    warm = _Server(app)
    await warm.open(10)
    await warm.close()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        server = _Server(app)
        await server.open(count)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    await server.close()
    return (after - before) / count


async def test_idle_websocket_consumer_costs_little_more_than_a_bare_app(
    memory_layer: InMemoryChannelLayer,
) -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif event["type"] == "websocket.disconnect":
                return

    baseline = await _bytes_per_connection(bare)
    consumer = await _bytes_per_connection(Echo.as_asgi())
    # Measured at about 2 KB on CPython 3.11 (docs/performance.md); a
    # listener task or a layer queue per idle connection would add 3 KB+.
    assert consumer - baseline < 3500, (consumer, baseline)


# ---- the per-frame fast paths (a frame on an open socket skips the edge's
# send wrapper; websocket_receive returns the handler's awaitable) -----------


async def _serve_frames(app: Any, frames: list[str], send: Any) -> None:
    """Drive ``app`` through connect, ``frames`` and a client disconnect."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    events.put_nowait({"type": "websocket.connect"})
    for text in frames:
        events.put_nowait({"type": "websocket.receive", "text": text})
    events.put_nowait({"type": "websocket.disconnect", "code": 1000})
    scope = {"type": "websocket", "path": "/", "headers": [], "subprotocols": []}
    await asyncio.wait_for(app(scope, events.get, send), TIMEOUT)


async def test_a_replaced_base_send_still_sees_every_frame() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(Echo):
        async def connect(self) -> None:
            await self.accept()
            server_send = self.base_send

            async def recording(message: dict[str, Any]) -> None:
                seen.append(message)
                await server_send(message)

            self.base_send = recording

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await _serve_frames(Recording.as_asgi(), ["a", "b"], send)
    frames = [{"type": "websocket.send", "text": t} for t in ("a", "b")]
    assert seen == frames
    assert sent == [{"type": "websocket.accept", "subprotocol": None}, *frames]


async def test_a_client_gone_mid_send_ends_quietly_and_drops_later_sends() -> None:
    disconnected: list[int] = []

    class Twice(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send(text_data=text_data)
            await self.send(text_data=text_data)  # dropped: the client is gone

        async def disconnect(self, code: int) -> None:
            disconnected.append(code)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            sent.append(message)
            raise ConnectionResetError("the client went away")

    await _serve_frames(Twice.as_asgi(), ["x"], send)
    assert sent == [{"type": "websocket.send", "text": "x"}]
    assert disconnected == [1000]


async def test_websocket_receive_overrides_awaiting_super_still_work() -> None:
    class Wrapped(Echo):
        max_message_size = 3

        async def websocket_receive(self, message: dict[str, Any]) -> None:
            await super().websocket_receive(message)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await _serve_frames(Wrapped.as_asgi(), ["ok", "too long"], send)
    assert sent[1:] == [
        {"type": "websocket.send", "text": "ok"},
        {"type": "websocket.close", "code": 1009},
    ]


@pytest.mark.parametrize(
    "consumer", [AsyncWebsocketConsumer, AsyncJsonWebsocketConsumer, AsyncHttpConsumer]
)
def test_protocol_handlers_stay_coroutine_functions_as_in_channels(
    consumer: type,
) -> None:
    # The per-frame path could return awaitables instead; code written for
    # Channels may inspect the handlers (Channels 4.3.2: all are async def).
    handlers = [n for n in dir(consumer) if n.startswith(("websocket_", "http_"))]
    assert handlers
    assert all(inspect.iscoroutinefunction(getattr(consumer, n)) for n in handlers)


# ---- the dispatch loop calls handlers itself while ``dispatch`` and
# ``websocket_receive`` are achannels' own; anything replaced is called ------


def _recorder() -> tuple[list[dict[str, Any]], Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return sent, send


def _echoes(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "websocket.send", "text": t} for t in texts]


async def test_an_overridden_dispatch_sees_every_client_message() -> None:
    seen: list[str] = []

    class Counting(Echo):
        async def dispatch(self, message: dict[str, Any]) -> None:
            seen.append(message["type"])
            await super().dispatch(message)

    sent, send = _recorder()
    await _serve_frames(Counting.as_asgi(), ["a", "b", "c"], send)
    assert seen == [
        "websocket.connect",
        *["websocket.receive"] * 3,
        "websocket.disconnect",
    ]
    assert sent[1:] == _echoes("a", "b", "c")


async def test_a_dispatch_replaced_on_the_instance_is_called() -> None:
    seen: list[str] = []

    class Patched(Echo):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            default = self.dispatch

            async def dispatch(message: dict[str, Any]) -> None:
                seen.append(message["type"])
                await default(message)

            self.dispatch = dispatch  # type: ignore[method-assign]

    sent, send = _recorder()
    await _serve_frames(Patched.as_asgi(), ["a"], send)
    assert seen == ["websocket.connect", "websocket.receive", "websocket.disconnect"]
    assert sent[1:] == _echoes("a")


async def test_a_dispatch_that_handles_frames_itself_replaces_the_handlers() -> None:
    class Own(Echo):
        async def dispatch(self, message: dict[str, Any]) -> None:
            if message["type"] == "websocket.receive":
                await self.send(text_data=message["text"].upper())
            else:
                await super().dispatch(message)

    sent, send = _recorder()
    await _serve_frames(Own.as_asgi(), ["a", "b"], send)
    assert sent[1:] == _echoes("A", "B")


async def test_a_websocket_receive_replaced_on_the_class_or_instance_is_called() -> (
    None
):
    class Upper(Echo):
        async def websocket_receive(self, message: dict[str, Any]) -> None:
            await self.send(text_data=message["text"].upper())

    sent, send = _recorder()
    await _serve_frames(Upper.as_asgi(), ["a"], send)
    assert sent[1:] == _echoes("A")

    # A test's patch of the class attribute, after the class was made.
    class Plain(Echo):
        pass

    async def doubled(self: Echo, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"] * 2)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Plain, "websocket_receive", doubled)
        sent, send = _recorder()
        await _serve_frames(Plain.as_asgi(), ["a"], send)
    assert sent[1:] == _echoes("aa")

    class OnInstance(Echo):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

            async def websocket_receive(message: dict[str, Any]) -> None:
                await self.send(text_data=message["text"] + "!")

            self.websocket_receive = websocket_receive  # type: ignore[method-assign]

    sent, send = _recorder()
    await _serve_frames(OnInstance.as_asgi(), ["a"], send)
    assert sent[1:] == _echoes("a!")


async def test_frames_are_handled_one_at_a_time_in_arrival_order() -> None:
    active = 0
    overlaps = 0
    handled: list[str] = []

    class Slow(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            nonlocal active, overlaps
            active += 1
            overlaps += active > 1
            for _ in range(3):
                await asyncio.sleep(0)
            handled.append(str(text_data))
            active -= 1
            await self.send(text_data=text_data)

    texts = [str(n) for n in range(20)]
    sent, send = _recorder()
    await _serve_frames(Slow.as_asgi(), texts, send)
    assert overlaps == 0
    assert handled == texts
    assert sent[1:] == _echoes(*texts)


async def test_a_frame_handler_error_propagates_named_once_as_before() -> None:
    class Failing(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            raise RuntimeError("receive failed")

    sent, send = _recorder()
    with pytest.raises(RuntimeError, match="receive failed") as raised:
        await _serve_frames(Failing.as_asgi(), ["x"], send)
    assert raised.value.__notes__ == [
        "raised by test_a_frame_handler_error_propagates_named_once_as_before."
        "<locals>.Failing handling a 'websocket.receive' message for '/'"
    ]
    assert sent[-1] == {"type": "websocket.close", "code": 1011}


async def test_client_message_errors_outside_handlers_are_not_named() -> None:
    # No handler: the ValueError comes from the lookup, before any handler
    # runs, and dispatch never named those.
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in ({"type": "websocket.connect"}, {"type": "never.handled"}):
        events.put_nowait(message)
    _sent, send = _recorder()
    scope = {"type": "websocket", "path": "/", "headers": [], "subprotocols": []}
    with pytest.raises(ValueError, match=r"No handler for message type") as raised:
        await asyncio.wait_for(Echo.as_asgi()(scope, events.get, send), TIMEOUT)
    assert not getattr(raised.value, "__notes__", [])


async def test_a_sync_receive_on_an_async_consumer_fails_as_before() -> None:
    class Mistaken(AsyncWebsocketConsumer):
        def receive(  # type: ignore[override]
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            pass

    _sent, send = _recorder()
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        await _serve_frames(Mistaken.as_asgi(), ["x"], send)


async def test_stop_consumer_from_receive_ends_the_consumer_cleanly() -> None:
    disconnected: list[int] = []

    class Stopping(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            raise StopConsumer()

        async def disconnect(self, code: int) -> None:
            disconnected.append(code)

    sent, send = _recorder()
    await _serve_frames(Stopping.as_asgi(), ["x", "never handled"], send)
    assert sent == [{"type": "websocket.accept", "subprotocol": None}]
    # The edge owes the disconnect handling on every exit (1006: the client
    # did not announce the end).
    assert disconnected == [1006]
