"""A live feed over Server-Sent Events that resumes where the browser left.

Run it (``uvicorn --app-dir examples/sse_feed app:application``) and open
http://127.0.0.1:8000/: post to the feed from one tab, watch it arrive in
every tab. Stop the server, post nothing or post from another process,
start it again: each page reconnects by itself and gets what it missed
(its ``Last-Event-ID``), then the live items, none twice.

One process needs nothing else (the history is in memory, so it does not
survive a restart). With ``REDIS_URL`` set, the layer and the history are
in Redis: run several servers on one feed, restart them, the pages resume.
``FEED_PREFIX`` names the Redis keys (default ``sse-feed``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.sse import (
    AsyncEventStreamConsumer,
    EventHistory,
    InMemoryEventHistory,
)
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path

PAGE = (Path(__file__).parent / "index.html").read_bytes()
REDIS_URL = os.environ.get("REDIS_URL")
PREFIX = os.environ.get("FEED_PREFIX", "sse-feed")

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
    history = RedisEventHistory(prefix=PREFIX, max_events=1000, max_age=3600)
else:
    channel_layers.configure(
        {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
    )
    history = InMemoryEventHistory(max_events=1000, max_age=3600)


class FeedStream(AsyncEventStreamConsumer):
    """GET /events/: the feed, resumed from the browser's Last-Event-ID."""

    groups = ["feed"]
    history = history
    retry = 1000  # reconnect after 1 s

    async def feed_item(self, message: dict[str, Any]) -> None:
        # No id= needed: the stream sends the id that resumes after this item.
        await self.send_event({"text": message["text"]}, event="item")

    async def resume_gap(self, group: str) -> None:
        # The history no longer reaches back to the browser's last id.
        await self.send_event("", event="reload")


class Publish(AsyncHttpConsumer):
    """POST /publish/ (form field ``text``): add an item to the feed."""

    async def handle(self, body: bytes) -> None:
        text = parse_qs(body.decode()).get("text", [""])[0].strip()[:500]
        if not text:
            await self.send_response(400, b"text is required")
            return
        event_id = await history.group_send("feed", {"type": "feed.item", "text": text})
        await self.send_response(
            200,
            json.dumps({"id": event_id}).encode(),
            headers=[(b"content-type", b"application/json")],
        )


class Page(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(
            200, PAGE, headers=[(b"content-type", b"text/html; charset=utf-8")]
        )


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path("events/", FeedStream.as_asgi()),
                path("publish/", Publish.as_asgi()),
                path("", Page.as_asgi()),
            ]
        )
    }
)
