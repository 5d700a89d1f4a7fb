"""A ``text/event-stream`` client for the tests: httpx streaming plus the
HTML standard's parsing rules, applied the way a browser's EventSource
applies them (so a framing bug shows up as a wrong event, not as a byte
difference nobody would notice).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

__all__ = ["Event", "EventStream", "EventStreamParser", "open_stream"]

TIMEOUT = 10.0


@dataclass(frozen=True)
class Event:
    """A dispatched event, as EventSource hands it to a listener."""

    type: str
    data: str
    last_event_id: str


class EventStreamParser:
    """Bytes in, events out, per the event stream interpretation rules."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._data = ""
        self._type = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        self._text += self._decoder.decode(chunk)
        events: list[Event] = []
        while True:
            cut = min(
                (i for i in (self._text.find("\r"), self._text.find("\n")) if i >= 0),
                default=-1,
            )
            if cut < 0:
                return events
            if self._text[cut] == "\r":
                if cut + 1 == len(self._text):
                    return events  # a CR at the end may be half of a CRLF
                end = cut + 2 if self._text[cut + 1] == "\n" else cut + 1
            else:
                end = cut + 1
            line, self._text = self._text[:cut], self._text[end:]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._data += value + "\n"
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event_type = self._data, self._type
        self._data = self._type = ""
        if data == "":
            return None
        return Event(event_type or "message", data[:-1], self.last_event_id)


class EventStream:
    """An open response: its headers, and the events as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = EventStreamParser()
        self._chunks = response.aiter_raw()
        self._ready: list[Event] = []
        self.ended = False
        self.bytes_read = 0

    @property
    def last_event_id(self) -> str:
        return self.parser.last_event_id

    async def read_chunk(self, timeout: float = TIMEOUT) -> bool:
        """Read one chunk off the wire; ``False`` once the response ended."""
        try:
            chunk = await asyncio.wait_for(anext(self._chunks), timeout)
        except StopAsyncIteration:
            self.ended = True
            return False
        self.bytes_read += len(chunk)
        self._ready.extend(self.parser.feed(chunk))
        return True

    async def next_event(self, timeout: float = TIMEOUT) -> Event:
        """The next event; ``AssertionError`` if the stream ends first."""
        async with asyncio.timeout(timeout):
            while not self._ready:
                if not await self.read_chunk(timeout):
                    raise AssertionError("the stream ended before the next event")
            return self._ready.pop(0)

    async def events(self, count: int, timeout: float = TIMEOUT) -> list[Event]:
        async with asyncio.timeout(timeout):
            return [await self.next_event(timeout) for _ in range(count)]

    async def rest(self, timeout: float = TIMEOUT) -> list[Event]:
        """Every event until the response ends."""
        async with asyncio.timeout(timeout):
            while await self.read_chunk(timeout):
                pass
        ready, self._ready = self._ready, []
        return ready


@contextlib.asynccontextmanager
async def open_stream(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = TIMEOUT,
) -> AsyncIterator[EventStream]:
    """GET ``url`` as EventSource does and hold the response open; closing
    the block closes the connection (the client leaves)."""
    request_headers = {"accept": "text/event-stream", **(headers or {})}
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None))
            )
        response = await stack.enter_async_context(
            client.stream("GET", url, headers=request_headers)
        )
        yield EventStream(response)
