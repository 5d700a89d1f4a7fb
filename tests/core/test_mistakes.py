"""The usual newcomer mistakes explain themselves (issue 13), seen through
routers and communicators; ``test_mistakes_served.py`` serves them for real."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from achannels.consumer import AsyncConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from achannels.layers import InMemoryChannelLayer
from achannels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter, path
from achannels.testing import ApplicationCommunicator, WebsocketCommunicator


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


def notes(exc: BaseException) -> str:
    return "\n".join(getattr(exc, "__notes__", []))


# --- a consumer class routed without .as_asgi() ------------------------------


def test_url_router_refuses_consumer_class_at_build_time() -> None:
    route = path("ws/chat/", ChatConsumer.as_asgi())
    route_without = type(route)(route.pattern, ChatConsumer, None, None)
    with pytest.raises(TypeError, match=r"ChatConsumer.*did you forget \.as_asgi\(\)"):
        URLRouter([route_without])


def test_path_refuses_consumer_class() -> None:
    with pytest.raises(
        TypeError,
        match=r"did you forget \.as_asgi\(\)\? Route ChatConsumer\.as_asgi\(\)",
    ):
        path("ws/chat/", ChatConsumer)


def test_django_path_with_consumer_class_fails_when_router_is_built() -> None:
    from django.urls import path as django_path

    with pytest.raises(TypeError, match=r"URLRouter route 'ws/chat/'.*\.as_asgi\(\)"):
        URLRouter([django_path("ws/chat/", ChatConsumer)])


def test_protocol_and_channel_routers_refuse_consumer_classes() -> None:
    with pytest.raises(TypeError, match=r"ProtocolTypeRouter\['websocket'\].*as_asgi"):
        ProtocolTypeRouter({"websocket": ChatConsumer})
    with pytest.raises(TypeError, match=r"ChannelNameRouter\['jobs'\].*as_asgi"):
        ChannelNameRouter({"jobs": AsyncConsumer})


async def test_consumer_instances_stay_accepted_as_in_channels() -> None:
    router = URLRouter([path("ws/chat/", ChatConsumer())])
    communicator = WebsocketCommunicator(router, "/ws/chat/")
    assert await communicator.connect() == (True, None)
    await communicator.disconnect()


# --- connect() raising before accept() --------------------------------------


class TutorialConsumer(AsyncJsonWebsocketConsumer):
    """The tutorial's shape: connect() sets what disconnect() reads."""

    disconnects: list[int]

    async def connect(self) -> None:
        self.room_name = self.scope["url_route"]["kwargs"]["room"]
        raise RuntimeError("database down")

    async def disconnect(self, code: int) -> None:
        type(self).disconnects.append(code)
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)  # type: ignore[attr-defined,union-attr]


async def test_connect_error_names_consumer_and_path_and_skips_disconnect(
    memory_layer: InMemoryChannelLayer,
) -> None:
    TutorialConsumer.disconnects = []
    app = URLRouter([path("ws/chat/<str:room>/", TutorialConsumer.as_asgi())])
    communicator = WebsocketCommunicator(app, "/ws/chat/lobby/")
    with pytest.raises(RuntimeError, match="database down") as raised:
        await communicator.connect()
    assert TutorialConsumer.disconnects == []  # as in Channels
    if sys.version_info >= (3, 11):
        assert "TutorialConsumer" in notes(raised.value)
        assert "'/ws/chat/lobby/'" in notes(raised.value)
        assert "disconnect() does not run" in notes(raised.value)


async def test_connect_error_still_leaves_the_groups(
    memory_layer: InMemoryChannelLayer,
) -> None:
    class Grouped(AsyncWebsocketConsumer):
        groups = ["news"]

        async def connect(self) -> None:
            raise RuntimeError("nope")

    communicator = WebsocketCommunicator(Grouped.as_asgi(), "/")
    with pytest.raises(RuntimeError):
        await communicator.connect()
    assert not memory_layer.groups.get("news")


async def test_sync_connect_error_skips_disconnect(
    memory_layer: InMemoryChannelLayer,
) -> None:
    ran: list[int] = []

    class Sync(WebsocketConsumer):
        def connect(self) -> None:
            raise RuntimeError("sync connect failed")

        def disconnect(self, code: int) -> None:
            ran.append(code)

    communicator = WebsocketCommunicator(Sync.as_asgi(), "/ws/sync/")
    with pytest.raises(RuntimeError, match="sync connect failed"):
        await communicator.connect()
    assert ran == []


async def test_error_after_accept_still_runs_disconnect(
    memory_layer: InMemoryChannelLayer,
) -> None:
    ran: list[int] = []

    class Late(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            raise RuntimeError("after accept")

        async def disconnect(self, code: int) -> None:
            ran.append(code)

    communicator = WebsocketCommunicator(Late.as_asgi(), "/")
    assert (await communicator.connect())[0]
    # The 1011 close goes to real clients only; a test sees the error, as
    # with Channels.
    with pytest.raises(RuntimeError, match="after accept"):
        await communicator.receive_output()
    assert ran == [1011]


# --- no channel layer configured --------------------------------------------


class Unconfigured(AsyncWebsocketConsumer):
    channel_layer_alias = "nowhere"

    async def connect(self) -> None:
        await self.channel_layer.group_add("room", self.channel_name)  # type: ignore[union-attr]
        await self.accept()


async def test_missing_layer_is_one_error_naming_alias_and_the_fix() -> None:
    communicator = WebsocketCommunicator(Unconfigured.as_asgi(), "/ws/")
    with pytest.raises(AttributeError, match="group_add") as raised:
        await communicator.connect()
    if sys.version_info >= (3, 11):
        text = notes(raised.value)
        assert "Unconfigured.channel_layer is None" in text
        assert "alias 'nowhere'" in text
        assert "CHANNEL_LAYERS" in text and "channel_layers.configure" in text


async def test_missing_layer_keeps_channel_layer_none_as_channels() -> None:
    seen: list[Any] = []

    class Looks(AsyncWebsocketConsumer):
        channel_layer_alias = "nowhere"

        async def connect(self) -> None:
            seen.append(self.channel_layer)
            await self.accept()

    communicator = WebsocketCommunicator(Looks.as_asgi(), "/")
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    assert seen == [None]


async def test_groups_without_layer_keeps_channels_words_and_explains() -> None:
    class Grouped(AsyncWebsocketConsumer):
        groups = ["news"]
        channel_layer_alias = "nowhere"

    communicator = WebsocketCommunicator(Grouped.as_asgi(), "/")
    with pytest.raises(Exception, match=r"^BACKEND is unconfigured") as raised:
        await communicator.connect()
    assert "alias 'nowhere'" in str(raised.value)


# --- a route that matches nothing -------------------------------------------


def router() -> URLRouter:
    return URLRouter([path("ws/chat/", ChatConsumer.as_asgi())])


async def test_unmatched_route_raises_for_communicators_as_in_channels() -> None:
    communicator = WebsocketCommunicator(router(), "/ws/nope/")
    with pytest.raises(ValueError, match=r"No route found for path 'ws/nope/'\."):
        await communicator.connect()


async def test_unmatched_route_from_a_server_is_a_404(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws/nope/",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
    }
    communicator = ApplicationCommunicator(router(), scope)
    with caplog.at_level(logging.WARNING, "achannels.routing"):
        await communicator.send_input({"type": "websocket.connect"})
        start = await communicator.receive_output()
        body = await communicator.receive_output()
        await communicator.wait()
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 404
    assert body["body"] == b"Not Found"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "'/ws/nope/'" in record.getMessage()
    assert "404" in record.getMessage()


async def test_unmatched_route_without_http_response_extension_is_a_close() -> None:
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": "/x/"}
    communicator = ApplicationCommunicator(router(), scope)
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output() == {"type": "websocket.close"}
    await communicator.wait()


async def test_unmatched_http_route_from_a_server_is_a_404() -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "path": "/x/", "method": "GET"}
    communicator = ApplicationCommunicator(URLRouter([]), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output()
    assert (start["type"], start["status"]) == ("http.response.start", 404)
    await communicator.receive_output()
    await communicator.wait()


# --- testing.md: connect() after deny() --------------------------------------


class Private(AsyncWebsocketConsumer):
    scopes: list[dict[str, Any]] = []

    async def connect(self) -> None:
        type(self).scopes.append(dict(self.scope))
        await self.deny(401, body=b"log in")


async def test_deny_is_an_http_response_when_the_communicator_advertises_it() -> None:
    communicator = WebsocketCommunicator(
        Private.as_asgi(), "/ws/private/", extensions={"websocket.http.response": {}}
    )
    assert await communicator.connect() == (False, 401)
    assert communicator.http_response is not None
    assert communicator.http_response["body"] == b"log in"


async def test_deny_falls_back_to_close_with_channels_scope_by_default() -> None:
    Private.scopes = []
    communicator = WebsocketCommunicator(Private.as_asgi(), "/ws/private/")
    assert await communicator.connect() == (False, 1000)
    assert "extensions" not in Private.scopes[0]
