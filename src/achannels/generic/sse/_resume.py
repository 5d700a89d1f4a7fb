"""Where a stream stands in each group it resumes: the ``Last-Event-ID``.

A stream that joins several groups with history has one position per group,
so the id it sends is all of them: ``"<id>"`` for one group,
``"<group>=<id>,<group>=<id>"`` for more (group names cannot contain ``=``
or ``,``). A bare id from the client applies to every group: ids are
milliseconds first, so "after this id" is "after this moment" everywhere.
"""

from __future__ import annotations

import logging

from ._history import id_key

__all__ = ["Cursors"]

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
