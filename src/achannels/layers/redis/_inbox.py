"""In-process inboxes: where messages read from Redis wait for their receiver.

A pump (core layer) or a subscription (pub/sub layer) hands each message it
reads to the inbox of its channel: straight to a waiting ``receive()`` when
there is one, else into a bounded queue. Every receiver gets its own copy of
a group message, so one consumer mutating it cannot change what another sees.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from ..._dispatch import Resume, RunHere
from ..._types import Message
from ...exceptions import ReceiverGone
from .._copy import is_flat
from .._warnings import RateLimitedWarning
from .serializers import local_copy, pack_local

__all__ = ["Inbox", "Leftovers", "LocalChannels"]

#: Queued messages by channel: ``(time.monotonic() of arrival, message)``.
Queued = dict[str, deque[tuple[float, Message]]]

logger = logging.getLogger("achannels.layers.redis")


class Inbox:
    """Messages for one channel that arrived before anyone asked for them,
    and the receivers waiting for the next one."""

    __slots__ = ("capacity", "entries", "here", "here_waiter", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: deque[tuple[float, Message]] = deque()
        self.waiters: deque[asyncio.Future[Message]] = deque()
        #: The waiter of a consumer's listener that can run a message right
        #: here (see ``_dispatch``), and how.
        self.here_waiter: asyncio.Future[Message] | None = None
        self.here: RunHere | None = None

    def put(self, message: Message, now: float, run_here: bool = True) -> bool:
        """Hand ``message`` to a waiter (or run it here for a listener, when
        ``run_here``) or queue it; return ``False`` when the queue was full
        and its oldest message was dropped to make room."""
        waiters = self.waiters
        while waiters:
            waiter = waiters[0]
            if waiter.done():
                waiters.popleft()
                continue
            if run_here and waiter is self.here_waiter:
                assert self.here is not None
                outcome = self.here(message)
                if outcome is True:
                    return True  # ran to its end: the listener waits on
                if outcome is not False:
                    message = outcome  # type: ignore[assignment]
            waiters.popleft()
            waiter.set_result(message)
            return True
        kept = True
        if len(self.entries) >= self.capacity:
            # The consumer stopped keeping up: dropping the oldest bounds memory,
            # as channels_redis does; the drop is counted and logged.
            self.entries.popleft()
            kept = False
        self.entries.append((now, message))
        return kept

    def take(self, expired_before: float) -> Message | None:
        """Return the oldest unexpired queued message, or ``None``."""
        entries = self.entries
        while entries:
            arrived, message = entries.popleft()
            if arrived >= expired_before:
                return message
        return None


class Leftovers:
    """Messages a layer already took from Redis for this process when the
    receiving of one event loop was closed (``close_pools()`` after each
    ``async_to_sync`` call, say): they wait here for the next loop's
    receiver, as they would in channels_redis's per-layer receive buffer,
    instead of being lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # loops of several threads meet here
        self._queued: Queued = {}

    def keep(self, queued: Queued) -> None:
        with self._lock:
            for channel, entries in queued.items():
                kept = self._queued.get(channel)
                if kept is None:
                    self._queued[channel] = entries
                else:
                    kept.extend(entries)

    def take(self) -> Queued:
        with self._lock:
            queued, self._queued = self._queued, {}
        return queued

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()


class LocalChannels:
    """The inboxes of one event loop, keyed by full channel name.

    ``capacity_of(channel)`` sizes each inbox; queued messages older than
    ``expiry`` seconds are dropped.
    """

    def __init__(self, capacity_of: Callable[[str], int], expiry: float) -> None:
        self._capacity_of = capacity_of
        self._expiry = expiry
        self._inboxes: dict[str, Inbox] = {}
        self._closed: str | None = None
        self._drops = RateLimitedWarning(
            logger,
            "Dropped %d message(s) for channels whose receivers fell behind "
            "their capacity (latest: %r); raise capacity/channel_capacity or "
            "make the consumer faster",
        )

    def waiting(self, channel: str) -> int:
        """Return how many receivers wait on ``channel`` right now."""
        inbox = self._inboxes.get(channel)
        return 0 if inbox is None else len(inbox.waiters)

    def has_waiter(self, channel: str) -> bool:
        """Return whether some receiver waits on ``channel``."""
        inbox = self._inboxes.get(channel)
        return inbox is not None and any(not w.done() for w in inbox.waiters)

    def deliver(self, channel: str, message: Message, now: float) -> None:
        """Give ``message`` to the next receiver of ``channel``; ``now`` is
        ``time.monotonic()`` (read once per batch by the caller)."""
        inbox = self._inboxes.get(channel)
        if inbox is None:
            inbox = self._inboxes[channel] = Inbox(self._capacity_of(channel))
        if not inbox.put(message, now):
            self._count_drop(channel)

    def deliver_each(
        self, channels: Collection[str], message: Message, now: float
    ) -> None:
        """Give each of ``channels`` its own copy of ``message`` (a group
        message), so a consumer that mutates its message cannot change what
        the others see; ``now`` as for :meth:`deliver`."""
        if len(channels) == 1:
            for channel in channels:
                self.deliver(channel, message, now)
            return
        if is_flat(message):
            # Immutable values only (most messages): a dict copy isolates as
            # well as unpacking would, at a tenth of the cost per member.
            # deliver() inlined: this loop runs once per member.
            inboxes = self._inboxes
            for channel in channels:
                inbox = inboxes.get(channel)
                if inbox is None:
                    inbox = inboxes[channel] = Inbox(self._capacity_of(channel))
                if not inbox.put(message.copy(), now):
                    self._count_drop(channel)
            return
        packed = pack_local(message)
        for channel in channels:
            self.deliver(channel, local_copy(packed), now)

    def push_back(self, channel: str, message: Message) -> None:
        """Return ``message`` to the front of ``channel``'s queue (a receiver
        was cancelled right after it was handed the message)."""
        inbox = self._inboxes.get(channel)
        if inbox is None:
            inbox = self._inboxes[channel] = Inbox(self._capacity_of(channel))
        # Never run here: we are in the cancelled receiver's task.
        if not inbox.put(message, time.monotonic(), run_here=False):
            self._count_drop(channel)
        elif inbox.entries and inbox.entries[-1][1] is message:
            inbox.entries.rotate(1)

    async def receive(
        self,
        channel: str,
        on_wait: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
        run_here: RunHere | None = None,
    ) -> Message:
        """Return the next message for ``channel``, waiting if there is none.

        ``on_wait`` runs just before the first wait (to start a pump); ``loop``
        is the running loop, when the caller has it; a consumer's listener
        passes ``run_here``, which then gets the messages arriving while it
        waits, and returns only what that cannot finish (see ``_dispatch``).
        Raises :class:`ReceiverGone` when the inboxes are closed meanwhile.
        """
        if self._closed is not None:
            raise ReceiverGone(self._closed)
        inbox = self._inboxes.get(channel)
        if inbox is None:
            inbox = self._inboxes[channel] = Inbox(self._capacity_of(channel))
        else:
            message = inbox.take(time.monotonic() - self._expiry)
            if message is not None:
                return message
        # On Python < 3.12 every get_running_loop() is a getpid() system call:
        # receive() is per delivery, so the caller's loop is reused.
        waiter: asyncio.Future[Message] = (
            loop or asyncio.get_running_loop()
        ).create_future()
        inbox.waiters.append(waiter)
        if run_here is not None:
            inbox.here_waiter = waiter
            inbox.here = run_here
        on_wait()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a message in the same tick we were cancelled: keep it
                # for the next receiver, or it is lost (a handler already
                # started is cancelled instead, as the listener is).
                result: Any = waiter.result()
                if result.__class__ is Resume:
                    await result.abandon()
                else:
                    self.push_back(channel, result)
            raise
        finally:
            # An idle inbox stays for the consumer's next receive(); sweep()
            # and forget() remove it.
            current = self._inboxes.get(channel)
            if current is not None:
                if waiter in current.waiters:
                    current.waiters.remove(waiter)
                if current.here_waiter is waiter:
                    current.here_waiter = current.here = None

    def forget(self, channel: str) -> None:
        """Drop ``channel``'s queued messages unless a receiver still waits."""
        inbox = self._inboxes.get(channel)
        if inbox is not None and not inbox.waiters:
            del self._inboxes[channel]

    def sweep(self) -> None:
        """Drop expired queued messages and forget empty inboxes."""
        expired_before = time.monotonic() - self._expiry
        for channel, inbox in list(self._inboxes.items()):
            entries = inbox.entries
            while entries and entries[0][0] < expired_before:
                entries.popleft()
            if not entries and not any(not w.done() for w in inbox.waiters):
                del self._inboxes[channel]

    def clear(self) -> None:
        """Drop every queued message; waiting receivers keep waiting."""
        for inbox in self._inboxes.values():
            inbox.entries.clear()
        self.sweep()

    def close(self, reason: str) -> Queued:
        """Fail every waiting receiver with :class:`ReceiverGone`; return the
        messages still queued, which the layer keeps for its next receiver."""
        self._closed = reason
        queued: Queued = {}
        for channel, inbox in self._inboxes.items():
            for waiter in inbox.waiters:
                if not waiter.done():
                    waiter.set_exception(ReceiverGone(reason))
            if inbox.entries:
                queued[channel] = inbox.entries
        self._inboxes.clear()
        return queued

    def adopt(self, queued: Queued) -> None:
        """Queue messages that an earlier receiver of the layer had read from
        Redis but nobody received yet (oldest first, within capacity)."""
        for channel, entries in queued.items():
            inbox = self._inboxes.get(channel)
            if inbox is None:
                inbox = self._inboxes[channel] = Inbox(self._capacity_of(channel))
            inbox.entries.extendleft(reversed(entries))
            while len(inbox.entries) > inbox.capacity:
                inbox.entries.popleft()
                self._count_drop(channel)

    def _count_drop(self, channel: str) -> None:
        self._drops.count(1, channel)
