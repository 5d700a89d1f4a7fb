"""Presence for channel layers: who is in a room, and diffs as that changes.

A connection (a consumer's channel) *tracks* a key (a user id, a name) with
metadata in a room; :meth:`presence_list` returns ``key -> [meta, ...]``,
one meta per connection. Changes reach the room's group as one
``{"type": "presence.diff", "room": ..., "joins": {...}, "leaves": {...}}``
message per burst: a :class:`DiffBuffer` gathers the changes of the last
:data:`DIFF_WINDOW` seconds and a :class:`DiffWorker` sends them.

Every meta a layer hands out carries ``"presence_ref"``, a ref unique to the
entry (a new one on each update), so a client merges a diff into a list it
read earlier by ref, as Phoenix clients do: add the metas of ``joins`` whose
ref it does not hold yet, then drop those whose ref is in ``leaves``. An
entry that came and went within one burst is in both; an update is a join
of the new meta and a leave of the old one.

This module holds what every layer shares and :class:`InMemoryPresence`, the
in-memory layer's store; the Redis store is ``layers/redis/_presence.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .._types import Message
from ._base import shown
from ._copy import copy_message, snapshot_message

if TYPE_CHECKING:
    from .memory import InMemoryChannelLayer

__all__ = [
    "DIFF_WINDOW",
    "REF",
    "DiffBuffer",
    "DiffWorker",
    "InMemoryPresence",
    "Meta",
    "PresenceMixin",
    "check_key",
    "check_meta",
    "group_metas",
    "new_ref",
]

logger = logging.getLogger("achannels.presence")

#: Metadata of one tracked connection.
Meta: TypeAlias = dict[str, Any]
#: key -> metas, the shape of ``presence_list`` and of a diff's halves.
Listing: TypeAlias = dict[str, list[Meta]]

#: The key every meta carries: the entry's ref.
REF = "presence_ref"
#: Seconds between the first change of a burst and its diff.
DIFF_WINDOW = 0.05
MAX_KEY_LENGTH = 200


def new_ref() -> str:
    """Return a new entry ref: short, random, JSON- and URL-safe."""
    return uuid.uuid4().hex[:16]


def check_key(key: object) -> str:
    """Return ``key`` if it can be a presence key; :class:`TypeError` if not."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise TypeError(
            f"Presence key must be a non-empty str of at most {MAX_KEY_LENGTH} "
            f"characters, got {type(key).__name__} {shown(key)}"
        )
    return key


def check_meta(meta: object) -> Meta:
    """Return a private copy of ``meta`` (``{}`` for ``None``). Raises
    :class:`TypeError` for a non-dict or a value that cannot be copied, and
    :class:`ValueError` for a meta carrying its own ``"presence_ref"``."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise TypeError(
            f"Presence meta must be a dict, got {type(meta).__name__} {shown(meta)}"
        )
    if REF in meta:
        raise ValueError(f"Presence meta must not contain {REF!r}: the layer sets it")
    snapshot, _ = snapshot_message(meta)
    return snapshot


def group_metas(entries: list[tuple[str, Meta]]) -> Listing:
    """Return ``(key, meta)`` pairs as ``key -> [meta, ...]``, order kept."""
    listing: Listing = {}
    for key, meta in entries:
        metas = listing.get(key)
        if metas is None:
            listing[key] = [meta]
        else:
            metas.append(meta)
    return listing


class DiffBuffer:
    """Changes not yet announced, per room, in two halves keyed by ref.

    Nothing cancels out: a client that applies joins then leaves ends where
    the room is, and still hears of an entry that came and went.
    """

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        # room -> (joins, leaves), each ref -> (key, meta with its ref).
        self._rooms: dict[str, tuple[dict[str, tuple[str, Meta]], ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._rooms)

    def _room(self, room: str) -> tuple[dict[str, tuple[str, Meta]], ...]:
        halves = self._rooms.get(room)
        if halves is None:
            halves = self._rooms[room] = ({}, {})
        return halves

    def join(self, room: str, key: str, meta: Meta) -> None:
        joins, _ = self._room(room)
        joins[meta[REF]] = (key, meta)

    def leave(self, room: str, key: str, meta: Meta) -> None:
        _, leaves = self._room(room)
        leaves[meta[REF]] = (key, meta)

    def take(self) -> list[tuple[str, Message]]:
        """Return ``(room, presence.diff message)`` for every room, emptying
        the buffer."""
        rooms, self._rooms = self._rooms, {}
        return [
            (
                room,
                {
                    "type": "presence.diff",
                    "room": room,
                    "joins": group_metas(list(joins.values())),
                    "leaves": group_metas(list(leaves.values())),
                },
            )
            for room, (joins, leaves) in rooms.items()
        ]


class DiffWorker:
    """One task on one event loop that sends a :class:`DiffBuffer`'s diffs
    ``window`` seconds after the first change of a burst, and calls ``beat``
    every ``interval`` seconds while ``active()`` says there is something to
    keep alive. The task ends when there is neither; :meth:`wake` starts it
    again."""

    def __init__(
        self,
        buffer: DiffBuffer,
        send: Callable[[str, Message], Awaitable[None]],
        *,
        window: float = DIFF_WINDOW,
        beat: Callable[[], Awaitable[None]] | None = None,
        interval: float = math.inf,
        active: Callable[[], bool] = lambda: False,
    ) -> None:
        self.buffer = buffer
        self.window = window
        self._send = send
        self._beat = beat
        self.interval = interval
        self._active = active
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._flush_at = math.inf
        self._closing = False

    def wake(self) -> None:
        """Say the buffer or the kept-alive set changed (call on the loop
        that owns the worker, or the first time on any loop)."""
        loop = asyncio.get_running_loop()
        if self._flush_at is math.inf and self.buffer:
            self._flush_at = loop.time() + self.window
        task = self._task
        if task is None or task.done() or task.get_loop().is_closed():
            if self._closing:
                return
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="achannels-presence")
        elif task.get_loop() is loop:
            assert self._wakeup is not None
            self._wakeup.set()
        else:
            wakeup = self._wakeup
            assert wakeup is not None
            task.get_loop().call_soon_threadsafe(wakeup.set)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        assert wakeup is not None
        beat_at = loop.time() + self.interval
        while True:
            now = loop.time()
            if self._flush_at <= now:
                await self.flush()
            if self._beat is not None and beat_at <= now:
                beat_at = now + self.interval
                try:
                    await self._beat()
                except Exception as error:
                    logger.warning("Presence heartbeat failed (%r); retrying", error)
            active = self._active()
            if not self.buffer and not active:
                return
            if self.buffer and self._flush_at == math.inf:
                # Changes the heartbeat found (a dead node's entries).
                self._flush_at = loop.time() + self.window
            deadline = min(self._flush_at, beat_at if active else math.inf)
            wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.wait(), max(0.0, deadline - loop.time()))

    async def flush(self) -> None:
        """Send every buffered diff now."""
        self._flush_at = math.inf
        for room, diff in self.buffer.take():
            try:
                await self._send(room, diff)
            except Exception:
                logger.exception("Could not send a presence diff to room %r", room)

    async def aclose(self) -> None:
        """Send what is buffered and stop the task (on its own loop)."""
        self._closing = True
        try:
            task = self._task
            if task is not None and not task.done():
                if task.get_loop() is asyncio.get_running_loop():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._task = None
            await self.flush()
        finally:
            self._closing = False


class InMemoryPresence:
    """Presence of one :class:`~achannels.layers.InMemoryChannelLayer`: a
    dict in this process. No heartbeat: a process cannot outlive itself."""

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self._layer = layer
        # room -> channel -> (key, meta with its ref), oldest first.
        self.rooms: dict[str, dict[str, tuple[str, Meta]]] = {}
        self._diffs = DiffBuffer()
        self._worker = DiffWorker(self._diffs, layer.group_send)

    async def track(self, room: str, channel: str, key: str, meta: Meta) -> None:
        entries = self.rooms.setdefault(room, {})
        old = entries.get(channel)
        entry = (key, {**meta, REF: new_ref()})
        entries[channel] = entry
        self._diffs.join(room, *entry)
        if old is not None:
            self._diffs.leave(room, *old)
        self._worker.wake()

    async def update(self, room: str, channel: str, meta: Meta) -> None:
        old = self.rooms.get(room, {}).get(channel)
        if old is None:
            raise LookupError(
                f"Channel {channel!r} tracks nothing in room {room!r}: "
                "presence_track() it first"
            )
        await self.track(room, channel, old[0], meta)

    async def untrack(self, room: str, channel: str) -> None:
        entries = self.rooms.get(room)
        if entries is None or channel not in entries:
            return
        old = entries.pop(channel)
        if not entries:
            del self.rooms[room]
        self._diffs.leave(room, *old)
        self._worker.wake()

    async def list(self, room: str) -> Listing:
        return group_metas(
            [
                (key, copy_message(meta, False))
                for key, meta in self.rooms.get(room, {}).values()
            ]
        )

    def clear(self) -> None:
        """Forget every entry and unsent diff (the layer's ``flush``)."""
        self.rooms.clear()
        self._diffs.take()

    async def aclose(self) -> None:
        await self._worker.aclose()


class PresenceMixin:
    """The presence API of a channel layer, on top of the store that
    :meth:`_presence_store` returns. ``extensions`` stays Channels' list:
    detect presence with ``hasattr(layer, "presence_list")``."""

    def _presence_store(self) -> Any:
        raise NotImplementedError

    require_valid_group_name: Callable[[object], bool]
    require_valid_channel_name: Callable[..., bool]

    async def presence_track(
        self, room: str, channel: str, key: str, meta: Meta | None = None
    ) -> None:
        """Track ``channel`` (one connection) as ``key`` with ``meta`` in
        ``room``, replacing what it tracked there before.

        The room's group gets a ``presence.diff`` with the join shortly after.
        Raises :class:`TypeError` for an invalid room (a group name) or
        channel name, a key that is not a non-empty str, or a meta that is
        not a dict of msgpack-friendly values.
        """
        self.require_valid_group_name(room)
        self.require_valid_channel_name(channel)
        await self._presence_store().track(
            room, channel, check_key(key), check_meta(meta)
        )

    async def presence_update(self, room: str, channel: str, meta: Meta) -> None:
        """Replace the meta ``channel`` tracks in ``room`` (same key, a new
        ref); the diff holds a join of the new meta and a leave of the old.
        Raises :class:`LookupError` when ``channel`` tracks nothing there."""
        self.require_valid_group_name(room)
        self.require_valid_channel_name(channel)
        await self._presence_store().update(room, channel, check_meta(meta))

    async def presence_untrack(self, room: str, channel: str) -> None:
        """Stop tracking ``channel`` in ``room``; nothing happens if it was
        not tracked. The room's group gets the leave shortly after."""
        self.require_valid_group_name(room)
        self.require_valid_channel_name(channel)
        await self._presence_store().untrack(room, channel)

    async def presence_list(self, room: str) -> Listing:
        """Return who is in ``room``: ``key -> [meta, ...]``, one meta (with
        its ``"presence_ref"``) per tracked connection (the in-memory layer
        lists them oldest first, the Redis layers in no set order)."""
        self.require_valid_group_name(room)
        listing: Listing = await self._presence_store().list(room)
        return listing
