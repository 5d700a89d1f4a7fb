"""Resuming: where a stream stands in each group with history, and the
reading that keeps what it delivers whole (docs/sse.md, "Resume").

A stream that joins several groups with history has one position per group,
so the id it sends is all of them: ``"<id>"`` for one group,
``"<group>=<id>,<group>=<id>"`` for more (group names cannot contain ``=``
or ``,``). A bare id from the client applies to every group: ids are
milliseconds first, so "after this id" is "after this moment" everywhere.

:class:`Resume` joins a group first and reads its history second, drops
live events it delivered already (by id), and reads the history whenever a
live event's predecessor is not the last one delivered, or (at a heartbeat)
when a group that was live has newer events than the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..._types import Message
from ._history import HISTORY_KEY, ID_KEY, START_ID, EventHistory, id_key

__all__ = ["Cursors", "Resume"]

logger = logging.getLogger("achannels.sse")

# Longer Last-Event-ID headers are not ours (ids are short); ignore them
# rather than parse a client's megabyte.
_MAX_HEADER = 8192


def parse_last_event_id(value: str | None) -> dict[str, str]:
    """Group -> position from a ``Last-Event-ID`` (``""`` for "every group");
    empty when absent or not one of ours."""
    if not value or len(value) > _MAX_HEADER:
        return {}
    try:
        if "=" not in value:
            id_key(value)
            return {"": value}
        positions: dict[str, str] = {}
        for part in value.split(","):
            group, _, position = part.partition("=")
            id_key(position)
            positions[group] = position
        return positions
    except ValueError:
        logger.debug("ignoring Last-Event-ID %r: not an id this server sent", value)
        return {}


class Cursors:
    """The last event delivered from each group this stream resumes."""

    __slots__ = ("_positions", "_requested")

    def __init__(self, last_event_id: str | None) -> None:
        self._requested = parse_last_event_id(last_event_id)
        self._positions: dict[str, str] = {}

    def requested(self, group: str) -> str | None:
        """Where the client asked to resume ``group``, if it did."""
        return self._requested.get(group, self._requested.get(""))

    def tracks(self, group: str) -> bool:
        return group in self._positions

    def track(self, group: str, position: str) -> None:
        self._positions[group] = position

    def forget(self, group: str) -> None:
        self._positions.pop(group, None)

    def position(self, group: str) -> str:
        return self._positions[group]

    def advance(self, group: str, event_id: str) -> bool:
        """Move ``group`` to ``event_id``; ``False`` (and no move) when the
        stream is already there or past it (a duplicate)."""
        if id_key(event_id) <= id_key(self._positions[group]):
            return False
        self._positions[group] = event_id
        return True

    def event_id(self) -> str:
        """The id that resumes every group from here."""
        positions = self._positions
        if len(positions) == 1:
            return next(iter(positions.values()))
        return ",".join(f"{group}={at}" for group, at in positions.items())


#: Hands a history event to the consumer's handler, with the id that
#: resumes after it.
Handle = Callable[[Message, str], Awaitable[None]]


class Resume:
    """One stream's resumption: its cursors, the catch-ups read before the
    stream opened, and the groups that were live since the last check."""

    __slots__ = (
        "_handle",
        "_live",
        "_open",
        "_pending",
        "_report_gap",
        "cursors",
        "history",
    )

    def __init__(
        self,
        history: EventHistory,
        last_event_id: str | None,
        handle: Handle,
        report_gap: Callable[[str], Awaitable[None]],
    ) -> None:
        self.history = history
        self.cursors = Cursors(last_event_id)
        self._handle = handle
        self._report_gap = report_gap
        self._open = False
        # Catch-ups read before the stream opened: sent after the headers.
        self._pending: list[tuple[str, list[Message], bool]] = []
        self._live: set[str] = set()

    async def join(self, group: str, subscribe: Callable[[], Awaitable[None]]) -> None:
        """Subscribe to ``group`` (``subscribe`` joins it on the layer), then
        catch up from the client's position, or from now."""
        history, cursors = self.history, self.cursors
        since = cursors.requested(group)
        resumed = since is not None
        if since is None:
            since = await history.last_id(group) or START_ID
        # Join first, then read: an event sent in between is then both in
        # the read and on its way live, and the live copy is dropped by its
        # id. (Read first, and it would be in neither.)
        await subscribe()
        cursors.track(group, since)
        events = await history.read_after(group, since)
        gap = resumed and bool(events) and events[0][HISTORY_KEY][1] != since
        if self._open:
            await self._catch_up(group, events, gap)
        else:
            self._pending.append((group, events, gap))

    def leave(self, group: str) -> None:
        self.cursors.forget(group)
        self._live.discard(group)

    async def open(self) -> None:
        """The stream is open: send the catch-ups read so far."""
        self._open = True
        pending, self._pending = self._pending, []
        for group, events, gap in pending:
            await self._catch_up(group, events, gap)

    async def receive_live(self, message: Message) -> bool:
        """Deliver a live history event in order, after any it lacks;
        ``False`` if its group is not one this stream resumes."""
        group, previous = message[HISTORY_KEY]
        cursors = self.cursors
        if not cursors.tracks(group):
            return False
        self._live.add(group)
        position, event_id = cursors.position(group), message[ID_KEY]
        if previous != position and id_key(event_id) > id_key(position):
            # Events between the last one delivered and this one have not
            # arrived: still on their way (another process published them),
            # dropped by a full channel, or lost with their publisher. The
            # history has them; their live copies are dropped when they come.
            await self._read_gap(group, position, event_id)
        await self._deliver(group, message)
        return True

    @property
    def has_live_groups(self) -> bool:
        return bool(self._live)

    async def check_live_groups(self) -> None:
        """Read what the groups that were live since the last check have
        beyond this stream's position: the last events of a burst that a
        full channel dropped have no later event to reveal the gap."""
        groups, self._live = self._live, set()
        for group in groups:
            newest = await self.history.last_id(group)
            if newest is None or not self.cursors.tracks(group):
                continue
            position = self.cursors.position(group)
            if id_key(newest) > id_key(position):
                await self._read_gap(group, position, newest)

    async def _catch_up(self, group: str, events: list[Message], gap: bool) -> None:
        if gap:
            await self._report_gap(group)
        for message in events:
            await self._deliver(group, message)

    async def _read_gap(self, group: str, position: str, until: str) -> None:
        missed = await self.history.read_after(group, position, until)
        if missed and missed[0][HISTORY_KEY][1] != position:
            await self._report_gap(group)  # trimmed before this stream read it
        for message in missed:
            await self._deliver(group, message)

    async def _deliver(self, group: str, message: Message) -> None:
        cursors = self.cursors
        if cursors.tracks(group) and cursors.advance(group, message[ID_KEY]):
            await self._handle(message, cursors.event_id())
        # else: left the group meanwhile, or delivered already
