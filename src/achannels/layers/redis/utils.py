"""channels_redis.utils' helpers, for code written against channels_redis
(``channels_redis.utils`` under ``install_as_channels()``).

``decode_hosts`` and ``create_pool`` are the ones both Redis layers use;
``_consistent_hash`` picks a host on the same CRC32 ring as channels_redis.
"""

from __future__ import annotations

from typing import Any

from ._hosts import consistent_hash as _consistent_hash
from ._hosts import create_pool, decode_hosts

__all__ = ["_close_redis", "_consistent_hash", "create_pool", "decode_hosts"]


async def _close_redis(connection: Any) -> None:
    """Close a redis-py client and its connection pool."""
    await connection.aclose(close_connection_pool=True)
