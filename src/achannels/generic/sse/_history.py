"""Event histories: what a group was sent, kept so streams can resume.

A history sits beside the channel layer. ``history.group_send(group,
message)`` gives the message an id, appends it to the group's history and
sends it to the group through the layer, with two keys added:

- ``event_id``: the message's id in its group, ``"<ms>-<n>"`` as Redis
  Stream ids are (milliseconds since the epoch, then a counter), ordered in
  the group;
- ``__history__``: ``[group, previous_id]``, the id of the message before it
  (``"0-0"`` for the first). A stream that last saw ``previous_id`` knows
  this one follows directly; one that did not knows it missed something and
  reads the gap from the history, which is how neither a late, reordered nor
  dropped live copy can leave a gap or a duplicate.

The consumer side (``read_after``, ``last_id``) is used by
``AsyncEventStreamConsumer``; applications only call ``group_send``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol, runtime_checkable

from ... import DEFAULT_CHANNEL_LAYER
from ..._types import ChannelLayerProtocol, Message
from ...exceptions import InvalidChannelLayerError
from ...layers import get_channel_layer
from ...layers._copy import copy_message, snapshot_message

__all__ = [
    "HISTORY_KEY",
    "ID_KEY",
    "START_ID",
    "EventHistory",
    "InMemoryEventHistory",
    "id_key",
    "stamp",
]

#: Key of the event id that ``group_send`` adds to the message.
ID_KEY = "event_id"
#: Key of ``[group, previous_id]``, read by the consumer.
HISTORY_KEY = "__history__"
#: The id before every group's first event.
START_ID = "0-0"

# A stored event: its sort key, the message, and whether it is flat (see
# layers/_copy.py: a flat message is copied with dict.copy()).
_Entry = tuple[tuple[int, int], Message, bool]


def id_key(event_id: str) -> tuple[int, int]:
    """The sort key of an event id (``ValueError`` if it is not one)."""
    ms, _, n = event_id.partition("-")
    key = (int(ms), int(n or 0))
    if key[0] < 0 or key[1] < 0:
        raise ValueError(f"not an event id: {event_id!r}")
    return key


def stamp(message: Message, group: str, event_id: str, previous: str) -> Message:
    """``message`` with its id and predecessor, as streams receive it."""
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError("group_send needs a message dict with a 'type'")
    for key in (ID_KEY, HISTORY_KEY):
        if key in message:
            raise ValueError(
                f"message already has {key!r}: the history sets it; rename your key"
            )
    stamped = dict(message)
    stamped[ID_KEY] = event_id
    stamped[HISTORY_KEY] = [group, previous]
    return stamped


def channel_layer_for(alias: str) -> ChannelLayerProtocol:
    layer: ChannelLayerProtocol | None = get_channel_layer(alias)
    if layer is None:
        raise InvalidChannelLayerError(
            f"an event history sends through channel layer {alias!r}, and none "
            "is configured (CHANNEL_LAYERS or channel_layers.configure)"
        )
    return layer


@runtime_checkable
class EventHistory(Protocol):
    """Per-group event history. ``group_send`` is for applications; the rest
    is what streams read."""

    #: Keep at most this many events per group.
    max_events: int
    #: Forget events older than this many seconds.
    max_age: float
    #: The channel layer ``group_send`` sends through.
    channel_layer_alias: str

    async def group_send(self, group: str, message: Message) -> str:
        """Append ``message`` to ``group``'s history and send it to the group
        (with ``event_id`` and ``__history__`` added); return its id."""
        ...

    async def last_id(self, group: str) -> str | None:
        """The id of ``group``'s newest event, ``None`` if it has none."""
        ...

    async def read_after(
        self, group: str, after: str, until: str | None = None
    ) -> list[Message]:
        """``group``'s events after ``after`` (and up to ``until``), oldest
        first, as ``group_send`` sent them; older than ``max_age`` left out."""
        ...


class InMemoryEventHistory:
    """Event history in this process's memory: for one process (and tests).

    Each group keeps at most ``max_events`` events, none older than
    ``max_age`` seconds. ``group_send`` sends through the channel layer of
    ``channel_layer_alias``. Across processes use
    ``achannels.layers.redis.RedisEventHistory``.
    """

    def __init__(
        self,
        *,
        max_events: int = 1000,
        max_age: float = 3600.0,
        channel_layer_alias: str = DEFAULT_CHANNEL_LAYER,
    ) -> None:
        if max_events < 1 or max_age <= 0:
            raise ValueError("max_events must be at least 1 and max_age positive")
        self.max_events = max_events
        self.max_age = max_age
        self.channel_layer_alias = channel_layer_alias
        # group -> (sort key, message, flat), oldest first.
        self._events: dict[str, deque[_Entry]] = {}
        self._last: tuple[int, int] = (0, 0)

    def _next_key(self) -> tuple[int, int]:
        ms = int(time.time() * 1000)
        last_ms, n = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, n + 1)
        return self._last

    def _prune(self, group: str) -> deque[_Entry] | None:
        events = self._events.get(group)
        if events is None:
            return None
        oldest = int((time.time() - self.max_age) * 1000)
        while events and events[0][0][0] < oldest:
            events.popleft()
        if not events:
            del self._events[group]
            return None
        return events

    def _forget_expired_groups(self) -> None:
        oldest = int((time.time() - self.max_age) * 1000)
        groups = self._events
        while groups:
            first = next(iter(groups))
            if groups[first][-1][0][0] >= oldest:
                return
            del groups[first]

    async def group_send(self, group: str, message: Message) -> str:
        layer = channel_layer_for(self.channel_layer_alias)
        if hasattr(layer, "require_valid_group_name"):
            layer.require_valid_group_name(group)
        events = self._prune(group)
        previous = START_ID if events is None else _format(events[-1][0])
        key = self._next_key()
        event_id = _format(key)
        # A snapshot: a later change by the sender must not reach the history.
        stamped, flat = snapshot_message(stamp(message, group, event_id, previous))
        if events is None:
            events = deque(maxlen=self.max_events)
        else:
            del self._events[group]
        # Groups stay ordered by their last event, so the ones nobody
        # publishes to any more are at the front and go once expired: the
        # history holds what is recent, not every group it ever saw.
        self._events[group] = events
        events.append((key, stamped, flat))
        self._forget_expired_groups()
        # Appended before it is sent: a stream that gets it live and then
        # finds the gap before it reads this history sees it there too.
        await layer.group_send(group, stamped)
        return event_id

    async def last_id(self, group: str) -> str | None:
        events = self._prune(group)
        return None if events is None else _format(events[-1][0])

    async def read_after(
        self, group: str, after: str, until: str | None = None
    ) -> list[Message]:
        events = self._prune(group)
        if events is None:
            return []
        start = id_key(after)
        end = id_key(until) if until is not None else None
        return [
            copy_message(message, flat)
            for key, message, flat in events
            if key > start and (end is None or key <= end)
        ]


def _format(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"
