"""The application the reliability tests serve: bad input, limits, slow
members, faults, shutdown, and a route that reports the server's own numbers.

Environment:

- ``RELIABILITY_LAYER``: ``memory`` (default), ``redis`` (the core layer)
  or ``redis-pubsub``;
- ``RELIABILITY_REDIS_URL``, ``RELIABILITY_REDIS_PREFIX`` and
  ``RELIABILITY_REDIS_KEYS`` (comma-separated encryption keys) for both
  Redis layers;
- ``RELIABILITY_CAPACITY``: channel capacity (default 100);
- ``RELIABILITY_EXPIRY``: message expiry in seconds (default 60).

What consumers report goes to stdout through the ``reliability_app`` logger,
one line each, so tests read it from the server's output.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import os
import sys
import time
import tracemalloc
import weakref
from typing import Any
from urllib.parse import parse_qs

import psutil  # type: ignore[import-untyped]

from achannels._types import Message, Receive, Scope, Send
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)
from achannels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from achannels.routing import ProtocolTypeRouter, URLRouter, path
from achannels.security.websocket import OriginValidator


def stdout_reporter(name: str) -> logging.Logger:
    """A logger that prints one line per report to stdout, where the tests
    that serve this app wait for them."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(sys.stdout))
    logger.propagate = False
    return logger


report = stdout_reporter("reliability_app")

#: Every consumer instance alive in the process; a leak shows up here.
LIVE_CONSUMERS: weakref.WeakSet[object] = weakref.WeakSet()


class ReportingMemoryLayer(InMemoryChannelLayer):
    """The in-memory layer, saying when the server closes it."""

    async def close(self) -> None:
        await super().close()
        report.info("reliability layer closed")


LAYER = os.environ.get("RELIABILITY_LAYER", "memory")

if LAYER in ("redis", "redis-pubsub"):
    from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer

    class ReportingRedisLayer(RedisChannelLayer):
        """The Redis layer, saying when the server closes it."""

        async def close(self) -> None:
            await super().close()
            report.info("reliability layer closed")

    class ReportingRedisPubSubLayer(RedisPubSubChannelLayer):
        """The Redis pub/sub layer, saying when the server closes it."""

        async def close(self) -> None:
            await super().close()
            report.info("reliability layer closed")


def _layer_config() -> dict[str, Any]:
    capacity = int(os.environ.get("RELIABILITY_CAPACITY", "100"))
    expiry = float(os.environ.get("RELIABILITY_EXPIRY", "60"))
    if LAYER in ("redis", "redis-pubsub"):
        backend = (
            "ReportingRedisLayer" if LAYER == "redis" else "ReportingRedisPubSubLayer"
        )
        return {
            "BACKEND": f"tests.apps.reliability_app.{backend}",
            "CONFIG": {
                "hosts": [os.environ["RELIABILITY_REDIS_URL"]],
                "prefix": os.environ.get("RELIABILITY_REDIS_PREFIX", "asgi"),
                "capacity": capacity,
                "expiry": int(expiry),
                "symmetric_encryption_keys": [
                    key
                    for key in os.environ.get("RELIABILITY_REDIS_KEYS", "").split(",")
                    if key
                ],
            },
        }
    return {
        "BACKEND": "tests.apps.reliability_app.ReportingMemoryLayer",
        "CONFIG": {"capacity": capacity, "expiry": expiry},
    }


channel_layers.configure({"default": _layer_config()})


class Tracked:
    """Mixin: registers the consumer in :data:`LIVE_CONSUMERS`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        LIVE_CONSUMERS.add(self)


class JsonEcho(Tracked, AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"echo": content})


class SyncJsonEcho(Tracked, JsonWebsocketConsumer):
    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"echo": content})


class LimitedEcho(Tracked, AsyncWebsocketConsumer):
    """Echoes frames of at most 1024 characters or bytes."""

    max_message_size = 1024

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        report.info("limited disconnect code=%s", code)


class Member(Tracked, AsyncWebsocketConsumer):
    """Joins the group named in the URL. A text frame is sent to the whole
    group (the frame "boom" raises instead); each group message goes to the
    client as a text frame."""

    async def connect(self) -> None:
        self.group = self.scope["url_route"]["kwargs"]["group"]
        assert self.channel_layer is not None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data == "boom":
            raise RuntimeError(f"boom in group {self.group}")
        assert self.channel_layer is not None
        await self.channel_layer.group_send(
            self.group, {"type": "member.message", "text": text_data}
        )

    async def member_message(self, event: Message) -> None:
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(self.group, self.channel_name)


class Announcer(Tracked, AsyncWebsocketConsumer):
    """Tells the client its channel name, then relays ``note.message``."""

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=self.channel_name)

    async def note_message(self, event: Message) -> None:
        await self.send(text_data=event["text"])


#: Origins ``ws/origin/`` accepts: one host on any port and scheme, a domain
#: with its subdomains, and one exact scheme, host and port.
ALLOWED_ORIGINS = ["example.com", ".example.org", "https://secure.example.net:8443"]


class Welcome(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data="welcome")


class Boom(Tracked, AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        raise RuntimeError(f"boom: {text_data}")

    async def disconnect(self, code: int) -> None:
        report.info("boom disconnect code=%s", code)


class Linger(Tracked, AsyncWebsocketConsumer):
    """Stays open until the server stops; its ``disconnect`` awaits the layer
    before reporting, so a report proves cleanup ran to its end."""

    async def connect(self) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_add("linger", self.channel_name)
        await self.accept()
        report.info("linger connected %s", self.scope["url_route"]["kwargs"]["n"])

    async def disconnect(self, code: int) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_discard("linger", self.channel_name)
        await asyncio.sleep(0)
        report.info(
            "linger disconnect done n=%s code=%s",
            self.scope["url_route"]["kwargs"]["n"],
            code,
        )


def _memory_layer_numbers(layer: Any) -> dict[str, Any]:
    if not isinstance(layer, InMemoryChannelLayer):
        return {}
    return {
        "group_members": {group: len(m) for group, m in layer.groups.items()},
        "channels": len(layer.channels),
        "queued": sum(queue.qsize() for queue in layer.channels.values()),
    }


async def _json_response(send: Send, payload: Any, status: int = 200) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


try:
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


def _malloc_trim() -> None:
    # glibc keeps freed memory in its heaps; giving it back to the system
    # makes RSS count what is still in use rather than past peaks.
    if _libc is not None:
        _libc.malloc_trim(0)


_traced: list[tracemalloc.Snapshot] = []


def _trace(command: str) -> list[str]:
    # For hunting a leak: "start" takes a baseline, "diff" lists the source
    # lines whose allocations grew most since then.
    if command == "start":
        tracemalloc.start(10)
        _traced[:] = [tracemalloc.take_snapshot()]
        return []
    if command == "diff" and _traced:
        stats = tracemalloc.take_snapshot().compare_to(_traced[0], "traceback")
        return [
            f"{stat.size_diff:+d} B {stat.count_diff:+d} blocks\n"
            + "\n".join(stat.traceback.format())
            for stat in stats[:15]
        ]
    return []


async def introspect(scope: Scope, receive: Receive, send: Send) -> None:
    """The server's own numbers, after a garbage collection: tasks, live
    consumers, layer state (in-memory layer) and RSS in bytes.
    ``?trace=start`` / ``?trace=diff`` start tracemalloc / add the biggest
    allocation growths since the start under ``"trace"``."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        # Any layer call drops what expired by now; this one changes nothing.
        await layer.group_discard("introspect", "introspect.probe")
    gc.collect()
    _malloc_trim()
    payload = {
        # Minus this request's own task.
        "tasks": len(asyncio.all_tasks()) - 1,
        "consumers": len(LIVE_CONSUMERS),
        "rss": psutil.Process().memory_info().rss,
        # Python objects' memory blocks in use: exact, unlike RSS.
        "blocks": sys.getallocatedblocks(),
        **_memory_layer_numbers(layer),
    }
    query = parse_qs(scope.get("query_string", b"").decode())
    if "trace" in query:
        payload["trace"] = _trace(query["trace"][0])
    await _json_response(send, payload)


async def broadcast(scope: Scope, receive: Receive, send: Send) -> None:
    """``?count=N&size=S&pause=P``: ``N`` group sends of ``S`` bytes of text
    to the group in the URL, ``P`` seconds apart; answers with the slowest
    ``group_send`` in seconds."""
    query = parse_qs(scope.get("query_string", b"").decode())
    count = int(query.get("count", ["1"])[0])
    text = "x" * int(query.get("size", ["10"])[0])
    pause = float(query.get("pause", ["0"])[0])
    group = scope["url_route"]["kwargs"]["group"]
    layer = get_channel_layer()
    slowest = 0.0
    for index in range(count):
        started = time.perf_counter()
        await layer.group_send(
            group, {"type": "member.message", "text": f"{index} {text}"}
        )
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(pause)
    await _json_response(send, {"sent": count, "slowest": slowest})


async def send_note(scope: Scope, receive: Receive, send: Send) -> None:
    """``?text=T``: send a ``note.message`` to the channel in the URL."""
    query = parse_qs(scope.get("query_string", b"").decode())
    channel = scope["url_route"]["kwargs"]["channel"]
    await get_channel_layer().send(
        channel, {"type": "note.message", "text": query["text"][0]}
    )
    await _json_response(send, {"sent": channel})


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/json/", JsonEcho.as_asgi()),
                path("ws/sync-json/", SyncJsonEcho.as_asgi()),
                path("ws/limited/", LimitedEcho.as_asgi()),
                path("ws/member/<str:group>/", Member.as_asgi()),
                path("ws/announce/", Announcer.as_asgi()),
                path("ws/origin/", OriginValidator(Welcome.as_asgi(), ALLOWED_ORIGINS)),
                path("ws/boom/", Boom.as_asgi()),
                path("ws/linger/<int:n>/", Linger.as_asgi()),
            ]
        ),
        "http": URLRouter(
            [
                path("introspect/", introspect),
                path("broadcast/<str:group>/", broadcast),
                path("send/<str:channel>/", send_note),
            ]
        ),
    }
)
