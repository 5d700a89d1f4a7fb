"""The consumer's life in process: accepting, refusing, closing, the
request body, errors, and what runs when the stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from achannels.exceptions import DenyConnection
from achannels.generic.sse import (
    AsyncEventStreamConsumer,
    InMemoryEventHistory,
    StreamState,
)
from achannels.layers import InMemoryChannelLayer
from achannels.testing import ApplicationCommunicator
from tests.support.event_stream import EventStreamParser

TIMEOUT = 5.0


def communicator(
    app: type[AsyncEventStreamConsumer], method: str = "GET"
) -> ApplicationCommunicator:
    scope = {"type": "http", "method": method, "path": "/s/", "headers": []}
    return ApplicationCommunicator(app.as_asgi(), scope)


async def response(c: ApplicationCommunicator) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and the whole body of a response that ends."""
    start = await c.receive_output(TIMEOUT)
    body = b""
    while True:
        chunk = await c.receive_output(TIMEOUT)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            return start["status"], dict(start["headers"]), body


async def test_deny_in_connect_answers_the_status_and_runs_disconnect() -> None:
    seen: list[str] = []

    class Private(AsyncEventStreamConsumer):
        async def connect(self) -> None:
            await self.deny(401, b"log in first")

        async def disconnect(self) -> None:
            seen.append(self.state.value)

    c = communicator(Private)
    await c.send_input({"type": "http.request"})
    status, _, body = await response(c)
    assert (status, body) == (401, b"log in first")
    await c.wait(TIMEOUT)
    assert seen == ["disconnected"]


async def test_deny_connection_raised_in_connect_answers_403() -> None:
    class Refusing(AsyncEventStreamConsumer):
        async def connect(self) -> None:
            raise DenyConnection

    c = communicator(Refusing)
    await c.send_input({"type": "http.request"})
    assert (await response(c))[0] == 403


async def test_connect_that_neither_accepts_nor_denies_answers_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Forgetful(AsyncEventStreamConsumer):
        async def connect(self) -> None:
            pass

    c = communicator(Forgetful)
    await c.send_input({"type": "http.request"})
    assert (await response(c))[0] == 500
    assert "neither accepted nor denied" in caplog.text


async def test_close_before_accept_answers_204_so_event_source_stops() -> None:
    class Gone(AsyncEventStreamConsumer):
        async def connect(self) -> None:
            await self.close()

    c = communicator(Gone)
    await c.send_input({"type": "http.request"})
    assert (await response(c))[0] == 204


async def test_post_body_reaches_connect_and_the_generator_answers_it() -> None:
    class Answer(AsyncEventStreamConsumer):
        heartbeat_interval = None

        async def events(self) -> AsyncIterator[Any]:
            for word in self.body.decode().split():
                yield word.upper()

    c = communicator(Answer, method="POST")
    await c.send_input({"type": "http.request", "body": b"one ", "more_body": True})
    await c.send_input({"type": "http.request", "body": b"two"})
    status, headers, body = await response(c)
    assert status == 200
    assert headers[b"content-type"] == b"text/event-stream"
    assert [e.data for e in EventStreamParser().feed(body)] == ["ONE", "TWO"]


async def test_handler_error_ends_the_response_then_raises_and_cleans_up(
    memory_layer: InMemoryChannelLayer,
) -> None:
    seen: list[str] = []

    class Broken(AsyncEventStreamConsumer):
        groups = ["boom"]

        async def boom_now(self, message: dict[str, Any]) -> None:
            raise RuntimeError("handler failed")

        async def disconnect(self) -> None:
            seen.append("disconnect")

    c = communicator(Broken)
    await c.send_input({"type": "http.request"})
    assert (await c.receive_output(TIMEOUT))["status"] == 200
    await c.receive_output(TIMEOUT)  # the opening comment
    await memory_layer.group_send("boom", {"type": "boom.now"})
    end = await c.receive_output(TIMEOUT)
    assert end == {"type": "http.response.body", "body": b"", "more_body": False}
    with pytest.raises(RuntimeError, match="handler failed"):
        await c.wait(TIMEOUT)
    assert seen == ["disconnect"]
    assert "boom" not in memory_layer.groups


async def test_send_event_before_accept_is_an_error_after_the_end_a_no_op() -> None:
    class Early(AsyncEventStreamConsumer):
        async def connect(self) -> None:
            with pytest.raises(RuntimeError, match="before accept"):
                await self.send_event("too early")
            await self.accept()
            await self.close()
            await self.send_event("too late")  # dropped
            assert self.state is StreamState.CLOSED

    c = communicator(Early)
    await c.send_input({"type": "http.request"})
    status, _, body = await response(c)
    assert (status, body) == (200, b":\n\n")


async def test_a_history_on_another_layer_than_the_stream_is_refused() -> None:
    class Mismatched(AsyncEventStreamConsumer):
        history = InMemoryEventHistory(channel_layer_alias="other")

    c = communicator(Mismatched)
    await c.send_input({"type": "http.request"})
    with pytest.raises(ValueError, match="same alias"):
        await c.wait(TIMEOUT)
