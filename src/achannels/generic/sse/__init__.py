"""Server-Sent Events: ``text/event-stream`` responses fed by groups, with
resume (new in achannels; Channels has no equivalent).

``AsyncEventStreamConsumer`` keeps one response open per client and writes
events to it: from handlers of the channel-layer messages its ``groups``
receive, or from an ``events()`` async generator. With a ``history``,
events published by ``history.group_send(group, message)`` get ids, and a
client reconnecting with ``Last-Event-ID`` gets what it missed before the
live events, without a gap or a duplicate. ``InMemoryEventHistory`` serves
one process; ``achannels.layers.redis.RedisEventHistory`` many (Redis
Streams). See docs/sse.md.
"""

from __future__ import annotations

from ._consumer import AsyncEventStreamConsumer, ServerSentEvent, StreamState
from ._history import EventHistory, InMemoryEventHistory

__all__ = [
    "AsyncEventStreamConsumer",
    "EventHistory",
    "InMemoryEventHistory",
    "ServerSentEvent",
    "StreamState",
]

for _public in (
    AsyncEventStreamConsumer,
    EventHistory,
    InMemoryEventHistory,
    ServerSentEvent,
    StreamState,
):
    _public.__module__ = __name__
del _public
