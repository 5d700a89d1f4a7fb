"""BaseMiddleware: scope isolation, pass-through, errors."""

from __future__ import annotations

import pytest

from achannels._types import Message, Receive, Scope, Send
from achannels.middleware import BaseMiddleware
from achannels.routing import URLRouter, path
from achannels.testing import WebsocketCommunicator


class AddUser(BaseMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope, user="ann")
        return await super().__call__(scope, receive, send)


async def test_inner_changes_to_scope_do_not_reach_the_caller() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scope["added"] = True
        seen.append(scope)

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    scope: Scope = {"type": "websocket", "path": "/"}
    await BaseMiddleware(inner)(scope, receive, send)
    assert scope == {"type": "websocket", "path": "/"}
    assert seen == [{"type": "websocket", "path": "/", "added": True}]


async def test_subclass_adds_to_scope_and_messages_pass_both_ways() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await send({"type": "websocket.accept"})
        await send(
            {"type": "websocket.send", "text": f"{scope['user']}:{message['type']}"}
        )

    communicator = WebsocketCommunicator(AddUser(app), "/")
    assert await communicator.connect() == (True, None)
    assert await communicator.receive_from() == "ann:websocket.connect"
    await communicator.wait()


async def test_middleware_around_router_keeps_routing_results_downstream() -> None:
    seen: list[Scope] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    app = AddUser(URLRouter([path("room/<int:n>/", endpoint)]))
    scope: Scope = {"type": "websocket", "path": "/room/4/"}
    await app(scope, receive, send)
    assert "url_route" not in scope and "user" not in scope
    assert seen[0]["user"] == "ann"
    assert seen[0]["url_route"] == {"args": (), "kwargs": {"n": 4}}


async def test_exceptions_of_the_inner_application_propagate() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("inner")

    async def receive() -> Message:
        raise AssertionError("not called")

    async def send(message: Message) -> None:
        raise AssertionError("not called")

    with pytest.raises(KeyError, match="inner"):
        await BaseMiddleware(broken)({"type": "http"}, receive, send)
