"""The application the Server-Sent Events tests serve.

In-memory layer and history by default; with ``SSE_REDIS_URL`` and
``SSE_PREFIX`` set, the Redis layer and ``RedisEventHistory`` under that
prefix, so two server processes share groups and history.

Routes:

- ``feed/<group>/``: joins the group with history; each ``feed.item`` is
  an event (``text`` as data, ``event: item``);
- ``publish/``: POST ``{"group", "count", "text", "delay"}`` publishes
  ``count`` events through the history, one by one (``delay`` seconds
  apart), and answers their ids;
- ``frames/``: fixed events exercising the framing, then the end;
- ``quiet/``: no events, heartbeat every ``?beat`` seconds (default 60);
- ``tokens/``: the generator form, ``?n`` tokens ``?delay`` apart;
- ``firehose/``: a generator of 64 KiB events without end;
- ``stats/``: JSON: consumer tasks running (pumps), group members (in
  memory), firehose events produced, generators closed, disconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.sse import (
    AsyncEventStreamConsumer,
    EventHistory,
    InMemoryEventHistory,
    ServerSentEvent,
)
from achannels.layers import channel_layers, get_channel_layer
from achannels.routing import ProtocolTypeRouter, URLRouter, path

REDIS_URL = os.environ.get("SSE_REDIS_URL")
PREFIX = os.environ.get("SSE_PREFIX", "sse")

history: EventHistory
if REDIS_URL:
    from achannels.layers.redis import RedisEventHistory

    channel_layers.configure(
        {
            "default": {
                "BACKEND": "achannels.layers.redis.RedisChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": PREFIX},
            }
        }
    )
    history = RedisEventHistory(prefix=PREFIX, max_events=500, max_age=600)
else:
    channel_layers.configure(
        {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
    )
    history = InMemoryEventHistory(max_events=500, max_age=600)

report = logging.getLogger("sse_app")
report.setLevel(logging.INFO)
report.addHandler(logging.StreamHandler(sys.stdout))
report.propagate = False

STATS: dict[str, int] = {"produced": 0, "disconnects": 0, "generator_closed": 0}
EVENT_SIZE = 64 * 1024


def query(scope: dict[str, Any], name: str, default: str) -> str:
    values = parse_qs(scope.get("query_string", b"").decode()).get(name)
    return values[0] if values else default


class Feed(AsyncEventStreamConsumer):
    history = history
    heartbeat_interval = 60.0

    async def connect(self) -> None:
        await self.group_add(self.scope["url_route"]["kwargs"]["group"])
        await self.accept()

    async def feed_item(self, message: dict[str, Any]) -> None:
        await self.send_event(message["text"], event="item")

    async def disconnect(self) -> None:
        STATS["disconnects"] += 1
        report.info("sse_app disconnect %s", self.scope["path"])


class Publish(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        request = json.loads(body)
        delay = request.get("delay", 0)
        ids = []
        for n in range(request["count"]):
            if delay:
                await asyncio.sleep(delay)
            ids.append(
                await history.group_send(
                    request["group"],
                    {"type": "feed.item", "text": f"{request['text']}{n}"},
                )
            )
        await self.send_response(
            200,
            json.dumps(ids).encode(),
            headers=[(b"content-type", b"application/json")],
        )


class Frames(AsyncEventStreamConsumer):
    retry = 1500

    async def connect(self) -> None:
        await self.accept(headers=[(b"x-stream", b"frames")])
        await self.send_event("one line")
        await self.send_event("two\nlines", event="multi", id="7")
        await self.send_event("cr\rand crlf\r\nend")
        await self.send_event({"json": ["é", 1]}, event="obj")
        await self.send_event(" leading space", retry=2500)
        await self.send_comment("a comment")
        await self.close()


class Quiet(AsyncEventStreamConsumer):
    async def connect(self) -> None:
        self.heartbeat_interval = float(query(self.scope, "beat", "60"))  # type: ignore[misc]
        await self.accept()

    async def disconnect(self) -> None:
        STATS["disconnects"] += 1
        report.info("sse_app disconnect %s", self.scope["path"])


class Tokens(AsyncEventStreamConsumer):
    async def events(self) -> AsyncIterator[Any]:
        n = int(query(self.scope, "n", "5"))
        delay = float(query(self.scope, "delay", "0"))
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield ServerSentEvent({"token": i}, event="token")
        yield ServerSentEvent("[DONE]", event="done")


class Firehose(AsyncEventStreamConsumer):
    async def events(self) -> AsyncIterator[Any]:
        chunk = "x" * EVENT_SIZE
        try:
            while True:
                STATS["produced"] += 1
                yield chunk
        finally:
            STATS["generator_closed"] += 1

    async def disconnect(self) -> None:
        STATS["disconnects"] += 1


class Stats(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        # Servers keep tasks of their own (hypercorn: per kept-alive
        # connection); the consumers' are the dispatcher's pumps.
        pumps = [
            task
            for task in asyncio.all_tasks()
            if "InOrderDispatcher" in task.get_coro().__qualname__  # type: ignore[union-attr]
        ]
        layer = get_channel_layer()
        members = sum(len(m) for m in getattr(layer, "groups", {}).values())
        data = dict(STATS, pumps=len(pumps), members=members)
        await self.send_response(
            200,
            json.dumps(data).encode(),
            headers=[(b"content-type", b"application/json")],
        )


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path("feed/<str:group>/", Feed.as_asgi()),
                path("publish/", Publish.as_asgi()),
                path("frames/", Frames.as_asgi()),
                path("quiet/", Quiet.as_asgi()),
                path("tokens/", Tokens.as_asgi()),
                path("firehose/", Firehose.as_asgi()),
                path("stats/", Stats.as_asgi()),
            ]
        )
    }
)
