"""The in-memory channel layer: one process, plain asyncio, no scans.

Cost model (what keeps ``send``, ``receive`` and ``group_send`` flat with
100,000 live channels):

- A waiting receiver gets a message handed to its future directly; nothing
  is queued or scheduled.
- A queued message's channel has at most one entry in a heap of expiry
  deadlines; expiring a message pops that entry, drops what is due in that
  channel and reschedules the channel by its next deadline. Cost is
  ``O(log n)`` per expired message, and nothing when no deadline is due.
- Group memberships sit in one ordered dict, oldest ``group_add`` first, so
  group expiry pops from its front and stops at the first live membership.
- A channel's group memberships are indexed, so a channel whose message
  expired (Channels' sign of a dead consumer) leaves its groups without a scan
  of every group.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import string
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .._errors import ReservedMessageKey
from .._types import Message
from ..exceptions import ChannelFull
from ._base import BaseChannelLayer, ChannelCapacity
from ._copy import copy_message, snapshot_message
from ._presence import InMemoryPresence, PresenceMixin
from ._warnings import RateLimitedWarning

__all__ = ["InMemoryChannelLayer"]

logger = logging.getLogger(__name__)

_LETTERS = string.ascii_letters
# The key Channels' layers keep for themselves; send refuses it (Channels asserts).
_RESERVED_KEY = "__asgi_channel__"

#: Above this many channels, ``send`` cleans up expired messages too (below
#: it, as in Channels, only ``receive`` and ``group_send`` do, and tests see
#: expired channels stay listed until then): a process that only sends to
#: channels nobody reads any more must not grow without bound.
SEND_CLEANS_ABOVE = 1000


class _Shared:
    """One ``group_send`` snapshot queued for many channels; every receiver
    takes its own copy, so members never share mutable objects and the
    sender pays for one copy however large the group."""

    __slots__ = ("flat", "message")

    def __init__(self, message: Message, flat: bool) -> None:
        self.message = message
        self.flat = flat

    def take(self) -> Message:
        return copy_message(self.message, self.flat)


def _own(item: Message | _Shared) -> Message:
    """Return the receiver's own message for a queued item."""
    return item.take() if isinstance(item, _Shared) else item


_Pending = deque[tuple[float, "Message | _Shared"]]


class _ChannelQueue:
    """Pending messages of one channel and the receivers waiting on it.

    ``layer.channels[name]`` is one of these. Like the ``asyncio.Queue``
    Channels keeps there, it has ``qsize()``, ``empty()`` and ``full()``.

    It never holds pending messages and waiting receivers at once: a
    receiver only waits on an empty queue, and a message only queues when
    nobody waits.
    """

    __slots__ = ("capacity", "messages", "waiters", "wake")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        #: ``(expiry deadline, message)`` oldest first; an empty tuple until
        #: the first message (an empty deque costs 760 bytes, and most
        #: consumers' channels never queue one).
        self.messages: _Pending | tuple[()] = ()
        #: Futures of waiting receivers, first come first served; created on
        #: first wait (most queues never have a waiter).
        self.waiters: list[asyncio.Future[Message | _Shared]] | None = None
        #: Called once when a message is queued: a consumer that has not
        #: started its listener yet (see ``_watch_channel``).
        self.wake: Callable[[], None] | None = None

    def pending(self) -> _Pending:
        """The queued messages, as a deque made on first use."""
        messages = self.messages
        if isinstance(messages, tuple):
            messages = self.messages = deque()
        return messages

    def idle(self) -> bool:
        """Nothing queued, nobody waiting, no consumer watching."""
        return not self.messages and not self.waiters and self.wake is None

    def qsize(self) -> int:
        return len(self.messages)

    def empty(self) -> bool:
        return not self.messages

    def full(self) -> bool:
        return len(self.messages) >= self.capacity

    def __repr__(self) -> str:
        return (
            f"<channel queue: {len(self.messages)}/{self.capacity} messages, "
            f"{len(self.waiters or ())} waiting>"
        )


class InMemoryChannelLayer(PresenceMixin, BaseChannelLayer):
    """A channel layer inside one process, for development, tests and
    single-process deployments (Channels' ``InMemoryChannelLayer``).

    ``expiry`` seconds after a message was sent it is dropped if nobody
    received it, and its channel leaves every group (a channel nobody reads is
    taken for dead, as in Channels). ``group_expiry`` seconds after the last
    ``group_add`` of a membership it ends. ``capacity`` and ``channel_capacity``
    bound each channel: ``send`` raises :class:`~achannels.exceptions.ChannelFull`
    and ``group_send`` skips a full member (logging a warning at most every
    :attr:`full_log_interval` seconds). Unknown keyword arguments raise
    :class:`TypeError`.

    Receivers get their own copy of every message (sender mutations after
    ``send`` and other group members never reach them). The layer holds no
    event-loop-bound state between calls, so one instance serves one event
    loop after another (a loop per test); waiting receivers belong to the
    loop that awaits them.

    :attr:`channels` maps each channel that has pending messages or waiting
    receivers, and the channel of every running consumer, to its queue;
    :attr:`groups` maps each group to ``{channel name: time.monotonic() of
    its last group_add}``. Empty channels are removed; a group emptied by
    expiry stays as an empty entry (as in Channels), one emptied by
    ``group_discard`` is removed.

    Expired messages are dropped when a channel is received from or a group
    sent to (``_clean_expired``, as in Channels); a ``send`` drops them only
    on a full channel (rather than refusing a message for expired ones) or
    when the layer holds more than ``SEND_CLEANS_ABOVE`` channels.

    Differences from Channels: ``channel_capacity`` works; two receivers on
    one channel never lose a message; a cancelled ``receive`` leaves nothing
    behind and never swallows a message; expiry costs only what expires.
    """

    extensions = ["groups", "flush"]

    #: Seconds between two warnings about ``group_send`` skipping full channels.
    full_log_interval: float = 10.0

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: ChannelCapacity | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                "InMemoryChannelLayer got unexpected option(s) "
                f"{', '.join(sorted(kwargs))}; it accepts expiry, group_expiry, "
                "capacity and channel_capacity"
            )
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        self.group_expiry = group_expiry
        self.channels: dict[str, _ChannelQueue] = {}
        self.groups: dict[str, dict[str, float]] = {}
        #: The time source for expiry; tests swap it to control time.
        self._clock: Callable[[], float] = time.monotonic
        # (deadline, channel): at most one live entry per channel with queued
        # messages, never later than its oldest message's deadline.
        self._deadlines: list[tuple[float, str]] = []
        # Channel -> deadline of its live heap entry; other entries are stale.
        self._scheduled: dict[str, float] = {}
        # (group, channel) -> time of the last group_add, oldest first.
        self._memberships: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Channel -> groups it belongs to.
        self._channel_groups: dict[str, set[str]] = {}
        # No membership can expire before this time.
        self._group_check_at = math.inf
        self._full = RateLimitedWarning(
            logger,
            "group_send skipped %d message(s) for channels at capacity since the "
            "last report (latest in group %r): their consumers do not keep up",
            self.full_log_interval,
        )
        self._presence = InMemoryPresence(self)
        #: The loop of the consumers (of the last new_channel()): the sync
        #: publisher runs its calls there, since this state is not thread-safe.
        self._home_loop: asyncio.AbstractEventLoop | None = None

    def _presence_store(self) -> InMemoryPresence:
        return self._presence

    # Time and expiry

    def _clean_expired(self) -> None:
        """Drop the messages and group memberships that have expired; a
        channel that had a message expire leaves all its groups (Channels'
        name and role: ``receive`` and ``group_send`` call it first)."""
        now = self._clock()
        deadlines = self._deadlines
        if (deadlines and deadlines[0][0] <= now) or now >= self._group_check_at:
            self._expire(now)

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        scheduled = self._scheduled
        while deadlines and deadlines[0][0] <= now:
            deadline, name = heapq.heappop(deadlines)
            if scheduled.get(name) != deadline:
                continue  # superseded by an earlier entry for this channel
            del scheduled[name]
            queue = self.channels.get(name)
            if queue is None:
                continue
            messages = queue.pending()
            expired = False
            while messages and messages[0][0] <= now:
                messages.popleft()
                expired = True
            if messages:
                self._schedule(name, messages[0][0])
            elif queue.idle():
                del self.channels[name]
            if expired:
                self._remove_from_groups(name)

        if now >= self._group_check_at:
            memberships = self._memberships
            oldest = now - self.group_expiry
            self._group_check_at = math.inf
            while memberships:
                (group, channel), added = next(iter(memberships.items()))
                if added > oldest:
                    self._group_check_at = added + self.group_expiry
                    break
                memberships.popitem(last=False)
                self._unlink(group, channel, keep_empty=True)

    def _schedule(self, name: str, deadline: float) -> None:
        current = self._scheduled.get(name)
        if current is None or deadline < current:
            self._scheduled[name] = deadline
            heapq.heappush(self._deadlines, (deadline, name))

    # Channels

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``: to a waiting receiver at once, else
        into the channel's queue. Raises :class:`TypeError` for an invalid
        name, a non-dict message or a value that cannot be copied (naming its
        key), and :class:`~achannels.exceptions.ChannelFull` when the channel
        already holds its capacity of messages."""
        if channel.__class__ is not str or channel not in self._known_channels:
            self._known_channels.learn(channel)
        if message.__class__ is not dict:
            self.require_valid_message(message)
        if _RESERVED_KEY in message:
            raise ReservedMessageKey(_RESERVED_KEY)
        item, _ = snapshot_message(message)
        channels = self.channels
        if len(channels) > SEND_CLEANS_ABOVE:
            self._clean_expired()
        queue = channels.get(channel)
        if queue is None:
            queue = channels[channel] = _ChannelQueue(self.get_capacity(channel))
        elif queue.waiters and self._hand_off(
            channel, queue, item, asyncio.get_running_loop()
        ):
            return
        if len(queue.messages) >= queue.capacity:
            # Full of expired messages, maybe (Channels would refuse then).
            self._clean_expired()
            queue = channels.get(channel) or channels.setdefault(
                channel, _ChannelQueue(self.get_capacity(channel))
            )
        if len(queue.messages) >= queue.capacity:
            raise ChannelFull(
                f"Channel {channel!r} already holds {queue.capacity} messages (its "
                "capacity): its consumer is not receiving fast enough"
            )
        deadline = self._clock() + self.expiry
        queue.pending().append((deadline, item))
        if channel not in self._scheduled:
            self._schedule(channel, deadline)
        if queue.wake is not None:
            self._wake(queue)

    async def receive(self, channel: str) -> Message:
        """Return the next message on ``channel``, waiting for one if need be.

        Concurrent receivers on one channel are served first come, first
        served, and each message goes to exactly one of them. Cancelling a
        waiting ``receive`` loses no message: one handed to it as it was
        cancelled goes back to the front of the channel. Raises
        :class:`TypeError` for an invalid channel name.
        """
        if channel.__class__ is not str or channel not in self._known_channels:
            self._known_channels.learn(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = _ChannelQueue(self.get_capacity(channel))
        elif queue.messages:
            _, item = queue.pending().popleft()
            if queue.idle():
                del self.channels[channel]
            return _own(item)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message | _Shared] = loop.create_future()
        if queue.waiters is None:
            queue.waiters = [future]
        else:
            queue.waiters.append(future)
        try:
            item = await future
        except asyncio.CancelledError:
            if future.cancelled() or not future.done():
                waiters = queue.waiters
                if future in waiters:  # else a sender already skipped it
                    waiters.remove(future)
                if queue.idle():
                    if self.channels.get(channel) is queue:
                        del self.channels[channel]
            else:
                # The message arrived as the cancellation did: it was never
                # received, so it goes back for the next receiver.
                self._put_back(channel, future.result(), loop)
            raise
        if queue.idle():
            if self.channels.get(channel) is queue:
                del self.channels[channel]
        return _own(item)

    def _hand_off(
        self,
        channel: str,
        queue: _ChannelQueue,
        item: Message | _Shared,
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        """Give ``item`` to the first live waiter of ``queue`` and return
        ``True``; return ``False`` (the caller queues it) if nobody waits.

        Only call it while ``queue`` holds no message, or order breaks.
        """
        waiters = queue.waiters
        assert waiters is not None
        while waiters:
            future = waiters.pop(0)  # rarely more than one or two waiters
            if future.done():  # cancelled; its receive() has not cleaned up yet
                continue
            owner = future.get_loop()
            if owner is loop:
                future.set_result(item)
                return True
            if owner.is_closed():  # a receive() abandoned with its loop
                continue
            # A loop in another thread: futures are not thread-safe, so the
            # message travels to that loop, which resolves its own future.
            owner.call_soon_threadsafe(self._deliver, channel, future, item)
            return True
        return False

    def _deliver(
        self,
        channel: str,
        future: asyncio.Future[Message | _Shared],
        item: Message | _Shared,
    ) -> None:
        """Resolve a waiter in its own loop's thread, or put the message back
        if its receive() was cancelled in the meantime."""
        if future.done():
            self._put_back(channel, item, future.get_loop())
        else:
            future.set_result(item)

    def _put_back(
        self, channel: str, item: Message | _Shared, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Return a message that no receiver took to the front of ``channel``
        (with a fresh expiry) and pass it on if someone else waits."""
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = _ChannelQueue(self.get_capacity(channel))
        deadline = self._clock() + self.expiry
        messages = queue.pending()
        messages.appendleft((deadline, item))
        self._schedule(channel, deadline)
        while messages and queue.waiters:
            deadline, item = messages.popleft()
            if not self._hand_off(channel, queue, item, loop):
                messages.appendleft((deadline, item))
                break
        if messages and queue.wake is not None:
            self._wake(queue)

    @staticmethod
    def _wake(queue: _ChannelQueue) -> None:
        wake = queue.wake
        queue.wake = None
        if wake is not None:
            wake()

    def _watch_channel(
        self, channel: str, wake: Callable[[], None]
    ) -> Callable[[], None]:
        """List ``channel`` in :attr:`channels` now and call ``wake()`` when
        the first message is queued on it; return the undo.

        A consumer calls this as it starts, so its channel is listed from
        the start as in Channels (whose consumers wait on it at once), while
        its listener task starts only when the channel is used."""
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = _ChannelQueue(self.get_capacity(channel))
        queue.wake = wake
        if queue.messages:
            self._wake(queue)

        def unwatch() -> None:
            current = self.channels.get(channel)
            if current is None:
                return
            if current.wake is wake:
                current.wake = None
            if current.idle():
                del self.channels[channel]

        return unwatch

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new unique process-specific channel name,
        ``f"{prefix}.inmemory!{12 random letters}"`` as in Channels. Raises
        :class:`TypeError` if ``prefix`` makes an invalid channel name."""
        self._home_loop = asyncio.get_running_loop()
        while True:
            name = f"{prefix}.inmemory!{''.join(random.choices(_LETTERS, k=12))}"
            if name not in self.channels:
                break
        self.require_valid_channel_name(name)
        return name

    # Flush extension

    async def flush(self) -> None:
        """Drop every pending message and every group. Receivers already
        waiting keep waiting and get the next message sent to them."""
        for name, queue in list(self.channels.items()):
            queue.messages = ()
            if queue.idle():
                del self.channels[name]
        self.groups.clear()
        self._deadlines.clear()
        self._scheduled.clear()
        self._memberships.clear()
        self._channel_groups.clear()
        self._group_check_at = math.inf
        self._presence.clear()

    async def close(self) -> None:
        """Send the presence diffs still buffered. Nothing else to release:
        pending messages, groups and presence stay (as in Channels); use
        :meth:`flush` to drop them."""
        await self._presence.aclose()

    # Groups extension

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or refresh its membership so that it
        lasts another ``group_expiry`` seconds. Raises :class:`TypeError` for
        an invalid name."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        now = self._clock()
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = {}
        members[channel] = now
        key = (group, channel)
        memberships = self._memberships
        if key in memberships:
            memberships.move_to_end(key)
        memberships[key] = now
        groups = self._channel_groups.get(channel)
        if groups is None:
            groups = self._channel_groups[channel] = set()
        groups.add(group)
        if now + self.group_expiry < self._group_check_at:
            self._group_check_at = now + self.group_expiry

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; nothing happens if it is not a
        member. Raises :class:`TypeError` for an invalid name."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        if self._memberships.pop((group, channel), None) is not None:
            self._unlink(group, channel)

    async def group_send(self, group: str, message: Message) -> None:
        """Send ``message`` to every channel in ``group``.

        Members whose channel is full are skipped (Channels' semantics) and
        counted in a warning logged at most every :attr:`full_log_interval`
        seconds. The message is copied once here, and each receiver gets its
        own copy when it receives. Raises :class:`TypeError` for an invalid
        group name, a non-dict message or a value that cannot be copied.
        """
        if group.__class__ is not str or group not in self._known_groups:
            self._known_groups.learn(group)
        if message.__class__ is not dict:
            self.require_valid_message(message)
        snapshot, flat = snapshot_message(message)
        self._clean_expired()
        now = self._clock()
        members = self.groups.get(group)
        if not members:
            return
        if _RESERVED_KEY in message:
            # Channels' group_send sends to each member, and send asserts.
            raise ReservedMessageKey(_RESERVED_KEY)
        shared = _Shared(snapshot, flat)
        deadline = now + self.expiry
        channels = self.channels
        scheduled = self._scheduled
        loop = asyncio.get_running_loop()
        skipped = 0
        for name in members:
            queue = channels.get(name)
            if queue is None:
                queue = channels[name] = _ChannelQueue(self.get_capacity(name))
            elif queue.waiters and self._hand_off(name, queue, shared, loop):
                continue
            if len(queue.messages) >= queue.capacity:
                skipped += 1
                continue
            queue.pending().append((deadline, shared))
            if name not in scheduled:
                self._schedule(name, deadline)
            if queue.wake is not None:
                self._wake(queue)
        if skipped:
            # full_log_interval may be set on the instance after it was made.
            self._full.interval = self.full_log_interval
            self._full.count(skipped, group, now=now)

    async def group_size(self, group: str) -> int:
        """Return how many channels are in ``group`` (no message is sent).
        Raises :class:`TypeError` for an invalid group name."""
        self.require_valid_group_name(group)
        self._clean_expired()
        return len(self.groups.get(group, ()))

    def _unlink(self, group: str, channel: str, *, keep_empty: bool = False) -> None:
        """Remove a membership from :attr:`groups` and the channel index (the
        caller already removed it from the expiry order). An emptied group is
        deleted unless ``keep_empty`` (expiry keeps it, as Channels does)."""
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members and not keep_empty:
                del self.groups[group]
        groups = self._channel_groups.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._channel_groups[channel]

    def _remove_from_groups(self, channel: str) -> None:
        """Remove ``channel`` from every group (Channels' name: used when a
        message on it expires). Emptied groups stay as empty entries, as in
        Channels."""
        for group in self._channel_groups.pop(channel, ()):
            self._memberships.pop((group, channel), None)
            members = self.groups.get(group)
            if members is not None:
                members.pop(channel, None)
