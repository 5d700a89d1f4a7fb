"""The chat consumer: one instance per browser tab.

Protocol (JSON text frames). The client connects to ``ws/chat/<room>/?name=..``
and sends ``{"type": "message", "text": ...}`` or
``{"type": "typing", "typing": true|false}``. The server sends:

- ``welcome``: ``room``, ``name``, ``history`` (last messages), ``members``,
  ``worker`` (the server process id, to see a cluster at work);
- ``message``: ``message`` = ``{"id", "name", "text", "ts"}``;
- ``presence``: ``event`` (``join``/``leave``), ``name``, ``members``;
- ``typing``: ``name``, ``typing``;
- ``error``: ``reason``. A connection the server refuses to keep is then
  closed with a 4xxx code, which tells the client not to retry.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from achannels.generic.websocket import AsyncJsonWebsocketConsumer

from .store import get_store

__all__ = ["ChatConsumer"]

logger = logging.getLogger("chat")

MAX_NAME = 24
MAX_TEXT = 2000
ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
# Close codes 4000-4999 are the application's: the page shows the reason and
# does not reconnect, since retrying would be refused again.
CLOSE_BAD_NAME = 4001
CLOSE_BAD_ROOM = 4002


def clean_name(raw: str) -> str:
    """The display name with control characters and extra spaces removed."""
    printable = "".join(ch for ch in raw if ch.isprintable())
    return " ".join(printable.split())[:MAX_NAME]


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Joins the room in the URL; relays messages, presence and typing."""

    # A frame far larger than any message we accept closes the socket (1009)
    # before it is even decoded.
    max_message_size = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.room = ""
        self.group = ""
        self.name = ""
        self.joined = False

    async def connect(self) -> None:
        self.room = str(self.scope["url_route"]["kwargs"]["room"])
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.name = clean_name(query.get("name", [""])[0])
        user = self.scope.get("user")
        if not self.name and user is not None and user.is_authenticated:
            self.name = clean_name(user.get_username())
        await self.accept()
        if not ROOM_RE.match(self.room):
            await self.refuse(
                "Room names are 1-40 letters, digits, - or _.", CLOSE_BAD_ROOM
            )
            return
        if not self.name:
            await self.refuse("Pick a name first.", CLOSE_BAD_NAME)
            return
        # Group names allow letters, digits, '-', '_' and '.'; the room
        # pattern above keeps this one valid.
        self.group = f"chat.{self.room}"
        layer = self.layer()
        # Join the group before reading history, so a message sent meanwhile
        # arrives live (the page drops duplicates by id) instead of being lost.
        await layer.group_add(self.group, self.channel_name)
        joined = await get_store().join(self.room, self.channel_name, self.name)
        self.joined = True
        await self.send_json(
            {
                "type": "welcome",
                "room": self.room,
                "name": self.name,
                "history": await get_store().history(self.room),
                "members": joined.members,
                "worker": os.getpid(),
            }
        )
        client = self.scope.get("client") or ("?", 0)
        logger.info("%s joined %s from %s", self.name, self.room, client[0])
        await layer.group_send(
            self.group,
            {
                "type": "chat.presence",
                "event": "join",
                "name": self.name,
                "announce": joined.first,
                "members": joined.members,
            },
        )

    async def refuse(self, reason: str, code: int) -> None:
        await self.send_json({"type": "error", "reason": reason})
        await self.close(code)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not self.joined or not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "message":
            await self.post(content.get("text"))
        elif kind == "typing":
            await self.layer().group_send(
                self.group,
                {
                    "type": "chat.typing",
                    "name": self.name,
                    "typing": bool(content.get("typing")),
                    "sender": self.channel_name,
                },
            )
        else:
            await self.send_json(
                {"type": "error", "reason": f"Unknown message type {kind!r}."}
            )

    async def post(self, text: object) -> None:
        if not isinstance(text, str) or not text.strip():
            return
        if len(text) > MAX_TEXT:
            reason = f"Messages are at most {MAX_TEXT} characters."
            await self.send_json({"type": "error", "reason": reason})
            return
        message = {
            "id": uuid.uuid4().hex,
            "name": self.name,
            "text": text.strip(),
            "ts": int(time.time() * 1000),
        }
        await get_store().remember(self.room, message)
        await self.layer().group_send(
            self.group, {"type": "chat.message", "message": message}
        )

    async def disconnect(self, code: int) -> None:
        if not self.joined:
            return
        self.joined = False
        layer = self.layer()
        await layer.group_discard(self.group, self.channel_name)
        left = await get_store().leave(self.room, self.channel_name)
        logger.info("%s left %s (code %s)", self.name, self.room, code)
        await layer.group_send(
            self.group,
            {
                "type": "chat.presence",
                "event": "leave",
                "name": self.name,
                "announce": left.last,
                "members": left.members,
            },
        )

    # Handlers for group messages: named after their "type".

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_presence(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "presence",
                "event": event["event"],
                "name": event["name"],
                "announce": event["announce"],
                "members": event["members"],
            }
        )

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event["sender"] != self.channel_name:
            await self.send_json(
                {"type": "typing", "name": event["name"], "typing": event["typing"]}
            )

    def layer(self) -> Any:
        # settings.CHANNEL_LAYERS always configures one; say so if it is gone.
        if self.channel_layer is None:
            raise RuntimeError("The chat needs a channel layer: see CHANNEL_LAYERS")
        return self.channel_layer
