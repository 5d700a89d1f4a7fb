"""A warning for events that can come in storms: counted, logged now and then."""

from __future__ import annotations

import logging
import math
import time

__all__ = ["RateLimitedWarning"]


class RateLimitedWarning:
    """Counts an event (a dropped or skipped message) and logs a warning at
    most once per ``interval`` seconds, with the count since the last one, so
    a storm of them costs one log line per interval.

    ``template`` is formatted as ``template % (count, *args)``.
    """

    __slots__ = ("_count", "_logger", "_next_at", "_template", "interval")

    def __init__(
        self, logger: logging.Logger, template: str, interval: float = 60.0
    ) -> None:
        self._logger = logger
        self._template = template
        #: Seconds between two warnings; may be changed at any time.
        self.interval = interval
        self._count = 0
        self._next_at = -math.inf

    def count(self, amount: int, *args: object, now: float | None = None) -> None:
        """Add ``amount`` events; log ``template % (count, *args)`` if due.

        ``now`` is the caller's ``time.monotonic()`` (or its own clock).
        """
        self._count += amount
        if now is None:
            now = time.monotonic()
        if now >= self._next_at:
            self._logger.warning(self._template, self._count, *args)
            self._count = 0
            self._next_at = now + self.interval
