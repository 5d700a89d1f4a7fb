"""Lua scripts of the Redis channel layer: one round trip per operation.

The keys and values they touch are the ones channels_redis 4.x uses: a
channel is a sorted set ``<prefix><channel>`` of serialized messages scored
by send time, a group a sorted set ``<prefix>:group:<group>`` of channel
names scored by join time. channels_redis issues several commands for each
operation; these scripts do the same work atomically in one call.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from ._cluster import Cluster

__all__ = [
    "GROUP_ADD",
    "GROUP_DELIVER",
    "GROUP_MEMBERS",
    "RESTORE_INFLIGHT",
    "SEND",
    "Script",
]


class Executor(Protocol):
    """Where a script runs: a Lane (one server) or a cluster SlotTarget."""

    async def execute(self, *args: Any) -> Any: ...


class Script:
    """A Lua script run with EVALSHA, loaded on first use by each server."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(self, lane: Executor, keys: list[Any], args: list[Any]) -> Any:
        """Run the script on ``lane``'s server and return its reply."""
        try:
            return await lane.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # EVAL both runs the script and caches it for the next EVALSHA.
            return await lane.execute("EVAL", self.source, len(keys), *keys, *args)

    async def run_batch(
        self, cluster: Cluster, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run the script once per ``(keys, args)`` on a cluster, one round
        trip per node (see :meth:`Cluster.run_batch`); every call's keys
        share a slot. Return the replies, exceptions in place of failures."""
        replies = await cluster.run_batch(
            [
                (keys[0], ("EVALSHA", self.sha, len(keys), *keys, *args))
                for keys, args in calls
            ]
        )
        missing = [
            i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)
        ]
        if missing:
            # A node that never ran it (or a replica promoted since).
            loaded = await cluster.run_batch(
                [
                    (keys[0], ("EVAL", self.source, len(keys), *keys, *args))
                    for keys, args in (calls[i] for i in missing)
                ]
            )
            for index, reply in zip(missing, loaded, strict=True):
                replies[index] = reply
        return replies


#: Drop expired messages, refuse a full channel (reply 0), else add the
#: message and refresh the key's TTL (reply 1).
#: KEYS: channel key. ARGV: message, score, expired-before, capacity, expiry.
SEND = Script(
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
)

#: Add a channel to a group and refresh the group's TTL.
#: KEYS: group key. ARGV: channel, score, group expiry.
GROUP_ADD = Script(
    """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

#: Drop expired memberships and return the remaining channel names joined
#: by newlines (channel names cannot contain one): one bulk string parses
#: much faster than an array of a thousand.
#: KEYS: group key. ARGV: joined-before.
GROUP_MEMBERS = Script(
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
return table.concat(redis.call('ZRANGE', KEYS[1], 0, -1), '\\n')
"""
)

#: Add one message to each channel key that has room; return the 1-based
#: indexes of the keys that were full (their channels are skipped).
#: KEYS: channel keys. ARGV: one message per key, one capacity per key,
#: then score, expired-before, expiry.
GROUP_DELIVER = Script(
    """
local n = #KEYS
local score = ARGV[2 * n + 1]
local expired_before = ARGV[2 * n + 2]
local expiry = ARGV[2 * n + 3]
local full = {}
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, expired_before)
    if redis.call('ZCARD', KEYS[i]) < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], score, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        full[#full + 1] = i
    end
end
return full
"""
)

#: Move messages a channels_redis receiver popped but never finished (its
#: ``<key>$inflight`` backup) back to the front of the channel, as
#: channels_redis receivers do before each pop, so a fleet that migrates
#: loses none when one of its old processes dies mid-message.
#: KEYS: channel key, backup key.
RESTORE_INFLIGHT = Script(
    """
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', KEYS[2])
return #backed_up / 2
"""
)
