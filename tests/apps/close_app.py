"""The application the connection-end tests serve (issue 12): the tutorial's
room, consumers whose end arrives while something is in flight, and
``@concurrent`` work that fills every slot.

It shares the reliability app's in-memory layer and ``introspect/`` route
(tasks, live consumers, group members). Consumers report to stdout through
the ``close_app`` logger, one line each; tests wait for those lines. Work
that must still be in flight when the client closes waits on a ``release``
(``GET release/<name>/``), never on a timer.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from achannels._types import Message, Receive, Scope, Send
from achannels.consumer import concurrent
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)
from achannels.routing import ProtocolTypeRouter, URLRouter, path
from tests.apps.reliability_app import Tracked, introspect, stdout_reporter

report = stdout_reporter("close_app")

# Released by GET release/<name>/: async waiters and sync (thread) waiters.
_released: dict[str, asyncio.Event] = {}
_released_threads: dict[str, threading.Event] = {}


def released(name: str) -> asyncio.Event:
    return _released.setdefault(name, asyncio.Event())


def released_in_thread(name: str) -> threading.Event:
    return _released_threads.setdefault(name, threading.Event())


class Room(Tracked, AsyncJsonWebsocketConsumer):
    """The tutorial's chat room: join and accept, say it to the group, pass
    on what the group says, leave."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        assert self.channel_layer is not None
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send(
            self.room, {"type": "chat.message", "message": content}
        )

    async def chat_message(self, event: Message) -> None:
        await self.send_json({"message": event["message"]})

    async def disconnect(self, code: int) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(self.room, self.channel_name)


class SyncRoom(Tracked, JsonWebsocketConsumer):
    """The same room as a sync consumer: every handler in its worker thread.
    A message ``"hold <name>"`` makes each member's handler block its thread
    until ``<name>`` is released."""

    def connect(self) -> None:
        from asgiref.sync import async_to_sync

        self.room = self.scope["url_route"]["kwargs"]["room"]
        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.group_add)(self.room, self.channel_name)
        self.accept()

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        from asgiref.sync import async_to_sync

        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.group_send)(
            self.room, {"type": "chat.message", "message": content}
        )

    def chat_message(self, event: Message) -> None:
        message = event["message"]
        self.send_json({"message": message})
        if isinstance(message, str) and message.startswith("hold "):
            report.info("close_app sync holding %s", self.scope["path"])
            released_in_thread(message.removeprefix("hold ")).wait(60)

    def disconnect(self, code: int) -> None:
        from asgiref.sync import async_to_sync

        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.group_discard)(self.room, self.channel_name)
        report.info("close_app sync disconnect %s", self.scope["path"])


class GroupMember(Tracked, AsyncWebsocketConsumer):
    """Joins the group named in the URL, then accepts."""

    group: str

    async def connect(self) -> None:
        self.group = self.scope["url_route"]["kwargs"]["group"]
        assert self.channel_layer is not None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()


class Holder(GroupMember):
    """A group member. A frame ``"<text>"`` goes to the group; each member's
    handler sends it on, then (for ``"hold <name>"``) holds until released.
    ``"boom"`` raises in ``receive``; ``"boom later"`` in the handler of a
    message to the consumer's own channel.
    ``disconnect()`` reports, then (with ``?slow-leave=<name>``) waits for
    that release before leaving the group, as a slow layer would."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        assert self.channel_layer is not None
        if text_data == "boom":
            raise RuntimeError("boom in receive")
        if text_data == "boom later":
            await self.channel_layer.send(self.channel_name, {"type": "boom.later"})
            return
        await self.group_send_text(text_data)

    async def group_send_text(self, text: str | None) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send(
            self.group, {"type": "group.message", "text": text}
        )

    async def boom_later(self, event: Message) -> None:
        raise RuntimeError("boom in a layer message")

    async def group_message(self, event: Message) -> None:
        text = event["text"]
        await self.send(text_data=text)
        if text.startswith("hold "):
            report.info("close_app holding %s", self.scope["path"])
            await released(text.removeprefix("hold ")).wait()
            report.info("close_app held %s", self.scope["path"])

    async def disconnect(self, code: int) -> None:
        report.info("close_app disconnect %s code=%s", self.scope["path"], code)
        query = self.scope.get("query_string", b"").decode()
        if query.startswith("slow-leave="):
            await released(query.removeprefix("slow-leave=")).wait()
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(self.group, self.channel_name)
        report.info("close_app left %s", self.scope["path"])


class Flood(Tracked, AsyncWebsocketConsumer):
    """``"<count> <size>"`` sends ``count`` frames of ``size`` bytes, then
    ``"sent"``."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        assert text_data is not None
        count, size = (int(part) for part in text_data.split())
        for _ in range(count):
            await self.send(bytes_data=b"x" * size)
        await self.send(text_data="sent")

    async def disconnect(self, code: int) -> None:
        report.info("close_app flood disconnect %s", self.scope["path"])


class Watch(GroupMember):
    """``@concurrent`` watches that run until cancelled, two slots.

    It joins the group in the URL. A frame ``"<how> <name>"`` asks for a
    watch: ``self`` through its own layer channel, ``group`` for every
    member through the group (the dispatch loop's channel pump then waits
    for the slot), ``direct`` by dispatching it from the in-order handler
    itself (which then waits); ``"<text>"`` alone is an ordinary frame."""

    max_concurrent_handlers = 2

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        assert text_data is not None and self.channel_layer is not None
        how, _, name = text_data.partition(" ")
        event = {"type": "watch", "name": name}
        if how == "self":
            await self.channel_layer.send(self.channel_name, event)
        elif how == "group":
            await self.channel_layer.group_send(self.group, event)
        elif how == "direct":
            await self.dispatch(event)
            report.info("close_app watch dispatched %s", name)
        else:
            await self.send(text_data=f"frame {text_data}")

    @concurrent
    async def watch(self, event: Message) -> None:
        await self.send(text_data=f"watching {event['name']}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            report.info("close_app watch cancelled %s", self.scope["path"])
            raise

    async def disconnect(self, code: int) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(self.group, self.channel_name)
        report.info("close_app watch disconnect %s", self.scope["path"])


async def release(scope: Scope, receive: Receive, send: Send) -> None:
    """Release every waiter on the name in the URL."""
    name = scope["url_route"]["kwargs"]["name"]
    released(name).set()
    released_in_thread(name).set()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"released"})


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/room/<str:room>/<int:seat>/", Room.as_asgi()),
                path("ws/sync-room/<str:room>/<int:seat>/", SyncRoom.as_asgi()),
                path("ws/holder/<str:group>/<int:seat>/", Holder.as_asgi()),
                path("ws/flood/<int:seat>/", Flood.as_asgi()),
                path("ws/watch/<str:group>/<int:seat>/", Watch.as_asgi()),
            ]
        ),
        "http": URLRouter(
            [
                path("introspect/", introspect),
                path("release/<str:name>/", release),
            ]
        ),
    }
)
