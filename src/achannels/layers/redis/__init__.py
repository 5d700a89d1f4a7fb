"""Redis channel layers, configured and stored as channels_redis 4.x's.

``RedisChannelLayer`` keeps messages and groups in sorted sets and survives
receivers that are briefly away; ``RedisPubSubChannelLayer`` uses Redis
pub/sub and delivers only to receivers subscribed at the time. Both read and
write the same keys, channel names and message bytes as channels_redis 4.3,
so processes running either library share channels and groups. They are
defined in :mod:`achannels.layers.redis.core` and
:mod:`achannels.layers.redis.pubsub` (channels_redis's ``core`` and
``pubsub``); import them from here. ``RedisEventHistory``
(:mod:`achannels.layers.redis.history`) keeps Server-Sent Events' history
in Redis Streams so streams resume across processes (docs/sse.md).

Configure them as with channels_redis::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "achannels.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
        }
    }
"""

from __future__ import annotations

from .core import RedisChannelLayer
from .history import RedisEventHistory
from .pubsub import RedisPubSubChannelLayer

__all__ = ["RedisChannelLayer", "RedisEventHistory", "RedisPubSubChannelLayer"]
