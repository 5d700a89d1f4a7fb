"""Presence from a consumer: ``self.presence.track(room, key=..., meta=...)``.

Not in Channels. A consumer tracks its connection in a room (any group
name) under a key (a user id, a display name) with metadata; everyone can
list the room; the room's group gets a ``presence.diff`` when entries come
and go, batched over a few milliseconds::

    class Room(AsyncJsonWebsocketConsumer):
        async def connect(self):
            await self.accept()
            self.room = "room." + self.scope["url_route"]["kwargs"]["name"]
            await self.presence.track(self.room, key=self.user_id, meta={"name": ...})
            await self.send_json({"type": "presence.state",
                                  "members": await self.presence.list(self.room)})

        async def presence_diff(self, event):   # {"joins": {...}, "leaves": {...}}
            await self.send_json(event)         # merge by ref: joins, then leaves

``track`` joins the room's group (so the connection gets the diffs), and
the connection's entries and that membership end when it does, whatever ends
it. Entries of a process that dies go within the Redis layers'
``presence_ttl``. The layer API underneath (``presence_track``,
``presence_update``, ``presence_untrack``, ``presence_list``) serves code
outside consumers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .layers._presence import REF, Listing, Meta

#: The key of every presence meta that holds its entry's ref.
PRESENCE_REF = REF

if TYPE_CHECKING:
    from .consumer import AsyncConsumer

__all__ = ["PRESENCE_REF", "Presence"]

logger = logging.getLogger("achannels.presence")

# How long leaving every room may take when the connection ends.
CLEANUP_TIMEOUT = 10.0


class Presence:
    """The presence of one consumer's connection (``consumer.presence``).

    Methods raise :class:`RuntimeError` when the consumer's layer has no
    presence (no layer configured, or a third-party backend), and what the
    layer's ``presence_*`` methods raise for bad input.
    """

    __slots__ = ("_consumer", "_groups", "_rooms")

    def __init__(self, consumer: AsyncConsumer) -> None:
        self._consumer = consumer
        #: Rooms this connection tracks an entry in.
        self._rooms: set[str] = set()
        #: Rooms whose group ``track`` joined (and so leaves at the end).
        self._groups: set[str] = set()

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection tracks an entry in."""
        return frozenset(self._rooms)

    def _layer(self) -> Any:
        layer = self._consumer.channel_layer
        if layer is None or not hasattr(layer, "presence_track"):
            raise RuntimeError(
                f"{type(self._consumer).__name__}.presence needs a channel layer "
                "with presence (InMemoryChannelLayer, RedisChannelLayer or "
                f"RedisPubSubChannelLayer); the layer is {layer!r}"
            )
        return layer

    async def track(self, room: str, key: str, meta: Meta | None = None) -> None:
        """Track this connection in ``room`` as ``key`` with ``meta`` (a dict
        of msgpack-friendly values), replacing what it tracked there.

        Joins the group ``room`` first, so this consumer gets the room's
        ``presence.diff`` messages (its own join included) in a
        ``presence_diff`` handler it must define.
        """
        layer = self._layer()
        channel = self._consumer.channel_name
        groups = getattr(self._consumer, "groups", None) or ()
        if room not in self._groups and room not in groups:
            await layer.group_add(room, channel)
            self._groups.add(room)
        await layer.presence_track(room, channel, key, meta)
        self._rooms.add(room)

    async def update(self, room: str, meta: Meta | None) -> None:
        """Replace this connection's meta in ``room`` (same key). Raises
        :class:`LookupError` when it tracks nothing there."""
        await self._layer().presence_update(room, self._consumer.channel_name, meta)

    async def untrack(self, room: str) -> None:
        """Remove this connection's entry from ``room`` and leave the group
        that :meth:`track` joined; nothing happens if it tracks nothing."""
        layer = self._layer()
        channel = self._consumer.channel_name
        self._rooms.discard(room)
        await layer.presence_untrack(room, channel)
        if room in self._groups:
            self._groups.discard(room)
            await layer.group_discard(room, channel)

    async def list(self, room: str) -> Listing:
        """Return who is in ``room``: ``key -> [meta, ...]``, one meta per
        connection, each with its ``"presence_ref"``."""
        listing: Listing = await self._layer().presence_list(room)
        return listing

    async def aclose(self) -> None:
        """Untrack every room and leave the groups :meth:`track` joined.

        The consumer calls this when its connection ends, whatever ended it.
        Failures are logged, not raised: the connection is gone either way,
        and a Redis layer's entries then expire with ``presence_ttl``.
        """
        if not self._rooms and not self._groups:
            return
        try:
            await asyncio.wait_for(self._leave_all(), CLEANUP_TIMEOUT)
        except Exception:
            logger.exception("Presence cleanup failed for %r", self._consumer)

    async def _leave_all(self) -> None:
        for room in sorted(self._rooms | self._groups):
            await self.untrack(room)
