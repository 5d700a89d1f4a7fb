"""``AsyncEventStreamConsumer``: one ``text/event-stream`` response per
consumer, fed by channel-layer messages, a generator, or both.

Everything the stream writes goes through the consumer's one dispatch loop
(``_dispatch.py``), so writes never interleave and handlers never overlap:

- the client's ASGI ``receive`` is awaited whenever no handler runs, so its
  ``http.disconnect`` ends the stream as soon as the client leaves, not at
  the next event;
- layer messages come from the consumer's channel (groups);
- the heartbeat and the ``events()`` generator are two more sources, each
  awaited by its pump: the generator is asked for its next item only after
  the previous one was written (the server's ``send`` waits while the
  client's socket is full), so a slow client slows the generator instead of
  growing a queue.

The dispatcher cancels and awaits every pump when the stream ends; cleanup
(leaving groups, ``disconnect()``) runs once on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..._types import ChannelLayerProtocol, Message, Receive, Send
from ...consumer import AsyncConsumer
from ...exceptions import (
    AcceptConnection,
    DenyConnection,
    InvalidChannelLayerError,
    StopConsumer,
)
from ._framing import HEARTBEAT, encode_comment, encode_event
from ._history import HISTORY_KEY, EventHistory
from ._resume import Resume

__all__ = ["AsyncEventStreamConsumer", "ServerSentEvent", "StreamState"]

logger = logging.getLogger("achannels.sse")

HeadersArg = Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes] | None

#: Sent with every stream. ``X-Accel-Buffering: no`` stops nginx (and
#: proxies that copy it) from buffering the response.
EVENT_STREAM_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

# How long cleanup after an abnormal end may take before it is abandoned.
CLEANUP_TIMEOUT = 10.0

_END_OF_RESPONSE: Message = {
    "type": "http.response.body",
    "body": b"",
    "more_body": False,
}


class StreamState(enum.Enum):
    """Where one event stream stands."""

    CONNECTING = "connecting"  # request received, no response yet
    OPEN = "open"  # headers sent: events may be written
    CLOSED = "closed"  # we ended the response (close, deny, error)
    DISCONNECTED = "disconnected"  # groups left and disconnect() ran


@dataclass(frozen=True)
class ServerSentEvent:
    """An event with fields, for ``events()`` to yield (a bare value yielded
    there is sent as ``data`` alone)."""

    data: Any
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class _Control(dict[str, Any]):
    """A message from the stream's own sources (heartbeat, generator), told
    apart from layer messages by its class, which no layer produces."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any = None) -> None:
        super().__init__(type="sse.control")
        self.kind = kind
        self.value = value


_HEARTBEAT = _Control("heartbeat")
_GENERATOR_DONE = _Control("done")


class AsyncEventStreamConsumer(AsyncConsumer):
    """A Server-Sent Events endpoint: an HTTP consumer whose response is a
    ``text/event-stream`` that stays open.

    Override ``connect()`` to authorise (``accept()``, ``deny(status)`` or
    raise ``DenyConnection``), write handlers for the layer messages of the
    ``groups`` it joins and call ``send_event()`` from them, or write
    ``events()`` as an async generator for a one-off stream. ``disconnect()``
    runs once however the stream ends.

    With ``history`` set (an ``InMemoryEventHistory`` or
    ``achannels.layers.redis.RedisEventHistory``), events published with
    ``history.group_send()`` carry ids, and a client that reconnects with
    ``Last-Event-ID`` first gets what it missed, then the live events, with
    no gap and no duplicate.
    """

    #: Groups joined before ``connect()`` and left when the stream ends.
    groups: list[str] | None = None
    #: Where the groups' events are kept for resuming; ``None``: no resume.
    history: ClassVar[EventHistory | None] = None
    #: Seconds of silence after which a comment is sent; ``None``: never.
    heartbeat_interval: ClassVar[float | None] = 15.0
    #: Reconnection delay (ms) sent to the client when the stream opens.
    retry: ClassVar[int | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups is None:
            self.groups = []
        #: The request body, once complete (``connect()`` may read it).
        self.body = b""
        self._state = StreamState.CONNECTING
        self._chunks: list[bytes] = []
        self._joined: list[str] = []
        self._resume: Resume | None = None
        # While a history event is handled: the id that resumes after it.
        self._event_id: str | None = None
        self._last_write = 0.0
        self._generator: AsyncIterator[Any] | None = None

    @property
    def state(self) -> StreamState:
        """Where the stream stands."""
        return self._state

    # -- what subclasses override ---------------------------------------

    async def connect(self) -> None:
        """Called once the request is complete; the default accepts."""
        await self.accept()

    def events(self) -> AsyncIterator[Any] | None:
        """Override as an async generator to stream what it yields (values
        as ``data``, or ``ServerSentEvent``); the response ends when it
        returns. It runs at most one item ahead of the client."""
        return None

    async def resume_gap(self, group: str) -> None:
        """Called before the catch-up when the history no longer holds every
        event after the client's ``Last-Event-ID`` in ``group`` (too old, or
        trimmed). Send an event that tells the client to reload, if needed."""

    async def disconnect(self) -> None:
        """Called once when the stream ends, whatever ended it; the groups
        are already left. Nothing can be sent from here."""

    def last_event_id(self) -> str | None:
        """The id the client resumes after: its ``Last-Event-ID`` header."""
        for name, value in self.scope.get("headers") or ():
            if name.lower() == b"last-event-id":
                return bytes(value).decode("latin-1")
        return None

    # -- the response ------------------------------------------------------

    async def accept(self, headers: HeadersArg = None) -> None:
        """Start the stream (status 200, the event-stream headers plus
        ``headers``), then send what ``group_add`` caught up on and start
        ``events()`` and the heartbeat."""
        if self._state is not StreamState.CONNECTING:
            raise RuntimeError(f"accept() on a stream that is {self._state.value}")
        extra = list(headers.items()) if isinstance(headers, Mapping) else headers
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*EVENT_STREAM_HEADERS, *(extra or ())],
            }
        )
        self._state = StreamState.OPEN
        # Some servers hold the headers until the first body; send a first
        # chunk so the client's EventSource opens now.
        retry = self.retry
        await self._write(HEARTBEAT if retry is None else b"retry: %d\n\n" % retry)
        if self._resume is not None:
            await self._resume.open()
        if self.heartbeat_interval is not None:
            self._add_source(self._heartbeat_due)
        self._generator = self.events()
        if self._generator is not None:
            self._add_source(self._next_generated)

    async def deny(
        self, status: int = 403, body: bytes = b"", headers: HeadersArg = None
    ) -> None:
        """Refuse the stream with a plain HTTP response. (EventSource does
        not reconnect after a status other than 200.)"""
        if self._state is not StreamState.CONNECTING:
            raise RuntimeError(f"deny() on a stream that is {self._state.value}")
        extra = list(headers.items()) if isinstance(headers, Mapping) else headers
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": list(
                    extra or [(b"content-type", b"text/plain; charset=utf-8")]
                ),
            }
        )
        self._state = StreamState.CLOSED
        await self.send({"type": "http.response.body", "body": body})

    async def close(self) -> None:
        """End the stream (EventSource reconnects after ``retry``; answer
        its next request with ``deny(204)`` to make it stop). Before
        ``accept()``: answer 204."""
        if self._state is StreamState.CONNECTING:
            await self.deny(204)
        elif self._state is StreamState.OPEN:
            self._state = StreamState.CLOSED
            await self.send(_END_OF_RESPONSE)

    async def send_event(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Send one event: ``data`` is a ``str`` or anything JSON carries;
        ``event`` its type, ``id`` its id, ``retry`` the reconnection delay
        (ms). In a handler of a history event ``id`` defaults to the id that
        resumes after it. Dropped once the stream has ended."""
        if self._state is not StreamState.OPEN:
            if self._state is StreamState.CONNECTING:
                raise RuntimeError("send_event() before accept()")
            return
        if id is None:
            id = self._event_id
        await self._write(encode_event(data, event, id, retry))

    async def send_comment(self, text: str = "") -> None:
        """Send a comment (clients ignore it)."""
        if self._state is StreamState.OPEN:
            await self._write(encode_comment(text))

    async def _write(self, chunk: bytes) -> None:
        try:
            await self.base_send(
                {"type": "http.response.body", "body": chunk, "more_body": True}
            )
        except OSError:
            # The client vanished mid-send; its http.disconnect follows.
            self._state = StreamState.CLOSED
            return
        loop = self._loop
        assert loop is not None, "__call__ sets the loop before any handler runs"
        self._last_write = loop.time()

    # -- groups and resuming ------------------------------------------------

    def _groups_layer(self) -> ChannelLayerProtocol:
        layer = self.channel_layer
        if layer is None or not hasattr(layer, "group_add"):
            raise InvalidChannelLayerError(
                f"{type(self).__name__} joins groups: configure a channel layer "
                "(CHANNEL_LAYERS or channel_layers.configure)"
            )
        return layer

    async def group_add(self, group: str) -> None:
        """Join ``group``; left when the stream ends. With a history, first
        replay what the client missed in it since its ``Last-Event-ID``."""
        layer = self._groups_layer()
        if group in self._joined:
            return
        self._joined.append(group)
        if self._resume is None:
            await layer.group_add(group, self.channel_name)
        else:
            await self._resume.join(
                group, lambda: layer.group_add(group, self.channel_name)
            )

    async def group_discard(self, group: str) -> None:
        """Leave ``group``."""
        if group in self._joined:
            self._joined.remove(group)
            if self._resume is not None:
                self._resume.leave(group)
            await self._groups_layer().group_discard(group, self.channel_name)

    async def _handle_history_event(self, message: Message, event_id: str) -> None:
        self._event_id = event_id
        try:
            await super().dispatch(message)
        finally:
            self._event_id = None

    # -- the dispatch loop ------------------------------------------------

    async def dispatch(self, message: Message) -> None:
        """Handle one message, then end the stream if it was closed."""
        if message.__class__ is _Control:
            await self._control(message)
        else:
            resume = self._resume
            if (
                resume is None
                or message.__class__ is not dict
                or HISTORY_KEY not in message
                or not await resume.receive_live(message)
            ):
                await super().dispatch(message)
        if self._state is StreamState.CLOSED:
            await self._finish()
            raise StopConsumer()

    async def _control(self, message: _Control) -> None:
        if message.kind == "heartbeat":
            if self._resume is not None and self._resume.has_live_groups:
                await self._resume.check_live_groups()
            if self._state is StreamState.OPEN:
                await self._write(HEARTBEAT)
        elif message.kind == "item":
            item = message.value
            if isinstance(item, ServerSentEvent):
                await self.send_event(
                    item.data, event=item.event, id=item.id, retry=item.retry
                )
            else:
                await self.send_event(item)
        else:
            await self.close()  # the generator is done

    def _add_source(self, source: Callable[[], Awaitable[Message]]) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None, "sources are added while the loop runs"
        dispatcher.add_source(source)

    async def _heartbeat_due(self) -> Message:
        interval = self.heartbeat_interval
        assert interval is not None
        loop = asyncio.get_running_loop()
        while True:
            delay = self._last_write + interval - loop.time()
            if delay <= 0:
                return _HEARTBEAT
            await asyncio.sleep(delay)

    async def _next_generated(self) -> Message:
        generator = self._generator
        assert generator is not None
        # Servers' send returns without suspending while the socket takes
        # data, and at once after the client left (uvicorn, hypercorn and
        # granian drop the data): a generator that never awaits would then
        # starve the loop, http.disconnect included. One yield per event.
        await asyncio.sleep(0)
        try:
            return _Control("item", await generator.__anext__())
        except StopAsyncIteration:
            return _GENERATOR_DONE

    async def http_request(self, message: Message) -> None:
        """Gather the body; once complete join ``groups`` and ``connect()``."""
        if self._state is not StreamState.CONNECTING:
            return
        body = message.get("body")
        if body:
            self._chunks.append(body)
        if message.get("more_body"):
            return
        self.body = b"".join(self._chunks)
        self._chunks.clear()
        if self.history is not None:
            if self.history.channel_layer_alias != self.channel_layer_alias:
                raise ValueError(
                    f"{type(self).__qualname__} listens on channel layer "
                    f"{self.channel_layer_alias!r} but its history sends through "
                    f"{self.history.channel_layer_alias!r}: live events would "
                    "never arrive; give both the same alias"
                )
            self._resume = Resume(
                self.history,
                self.last_event_id(),
                self._handle_history_event,
                self.resume_gap,
            )
        for group in self.groups or ():
            await self.group_add(group)
        try:
            await self.connect()
        except AcceptConnection:
            await self.accept()
        except DenyConnection:
            await self.deny()
        if self._state is StreamState.CONNECTING:
            logger.error(
                "%s.connect() neither accepted nor denied the stream %s; answering 500",
                type(self).__qualname__,
                self.scope.get("path", "?"),
            )
            await self.deny(500)

    async def http_disconnect(self, message: Message) -> None:
        """The client left: leave the groups, call ``disconnect()``, stop."""
        await self._finish()
        raise StopConsumer()

    async def _finish(self) -> None:
        if self._state is StreamState.DISCONNECTED:
            return
        self._state = StreamState.DISCONNECTED
        joined, self._joined = self._joined, []
        layer = self.channel_layer
        for group in joined:
            try:
                assert layer is not None
                await layer.group_discard(group, self.channel_name)
            except Exception:
                logger.exception("could not leave group %r", group)
        await self.disconnect()

    def _run(self, receive: Receive, send: Send) -> Awaitable[None]:
        return self._run_stream(super()._run(receive, send))

    async def _run_stream(self, run: Awaitable[None]) -> None:
        try:
            await run
        except StopConsumer:
            raise
        except BaseException:
            # A handler failed or the server is shutting down: end the
            # response properly, so the client sees the stream end (and
            # EventSource reconnects) instead of a broken connection.
            if self._state is StreamState.OPEN:
                self._state = StreamState.CLOSED
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.send(_END_OF_RESPONSE), CLEANUP_TIMEOUT)
            raise
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        generator, self._generator = self._generator, None
        aclose = getattr(generator, "aclose", None)
        try:
            if aclose is not None:
                # Runs the generator's finally blocks (its pump is done).
                await asyncio.wait_for(aclose(), CLEANUP_TIMEOUT)
            if self._state is not StreamState.DISCONNECTED:
                await asyncio.wait_for(self._finish(), CLEANUP_TIMEOUT)
        except Exception:
            logger.exception(
                "cleanup failed for event stream %s", self.scope.get("path", "?")
            )
