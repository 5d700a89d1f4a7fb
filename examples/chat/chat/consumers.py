"""The chat consumer: one instance per browser tab.

Protocol (JSON text frames). The client connects to ``ws/chat/<room>/?name=..``
and sends ``{"type": "message", "text": ...}`` or
``{"type": "typing", "typing": true|false}``. The server sends:

- ``welcome``: ``room``, ``name``, ``history`` (last messages), ``members``,
  ``worker`` (the server process id, to see a cluster at work);
- ``message``: ``message`` = ``{"id", "name", "text", "ts"}``;
- ``presence``: ``event`` (``join``/``leave``), ``name``, ``announce`` (the
  name's first tab came or its last went), ``members``;
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
from achannels.presence import PRESENCE_REF as REF

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


def room_group(room: str) -> str:
    """The group (and presence room) of a chat room. Group names allow
    letters, digits, '-', '_' and '.'; ROOM_RE keeps this one valid."""
    return f"chat.{room}"


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
        # Who is in the room as this connection knows it: name -> {ref: meta},
        # from the list read at connect, then kept up by presence diffs.
        self.present: dict[str, dict[str, Any]] = {}

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
        self.group = room_group(self.room)
        # Tracking joins the room's group too, before history is read, so a
        # message sent meanwhile arrives live (the page drops duplicates by
        # id) instead of being lost. Everyone in the group hears of the join
        # in a presence.diff; the entry goes when the connection does.
        await self.presence.track(
            self.group, key=self.name, meta={"worker": os.getpid()}
        )
        await get_store().add_room(self.room)
        listing = await self.presence.list(self.group)
        self.present = {
            name: {meta[REF]: meta for meta in metas} for name, metas in listing.items()
        }
        self.joined = True
        await self.send_json(
            {
                "type": "welcome",
                "room": self.room,
                "name": self.name,
                "history": await get_store().history(self.room),
                "members": self.members(),
                "worker": os.getpid(),
            }
        )
        client = self.scope.get("client") or ("?", 0)
        logger.info("%s joined %s from %s", self.name, self.room, client[0])

    def members(self) -> list[str]:
        # One entry per person, however many tabs they have open.
        return sorted(self.present, key=str.casefold)

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
        # Leaves the group too; it would happen anyway as the connection ends.
        await self.presence.untrack(self.group)
        logger.info("%s left %s (code %s)", self.name, self.room, code)

    # Handlers for group messages: named after their "type".

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": event["message"]})

    async def presence_diff(self, event: dict[str, Any]) -> None:
        # Merge by ref, joins first, then leaves (someone who came and went
        # within one diff is in both). An entry this connection already
        # knows (its own join, read in the list) is news to nobody.
        for name, metas in event["joins"].items():
            refs = self.present.setdefault(name, {})
            new = {m[REF]: m for m in metas if m[REF] not in refs}
            if new:
                first = not refs
                refs.update(new)
                await self.send_presence("join", name, announce=first)
            elif not refs:
                del self.present[name]
        for name, metas in event["leaves"].items():
            refs = self.present.get(name, {})
            gone = [refs.pop(m[REF]) for m in metas if m[REF] in refs]
            if not gone:
                continue
            if not refs:
                del self.present[name]
            await self.send_presence("leave", name, announce=not refs)

    async def send_presence(self, event: str, name: str, announce: bool) -> None:
        await self.send_json(
            {
                "type": "presence",
                "event": event,
                "name": name,
                "announce": announce,
                "members": self.members(),
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
