"""Presence and the sync publisher (issue #15)."""

import sys

# Every wait has a deadline: asyncio.timeout from 3.11, async_timeout (which
# redis-py installs there) on 3.10.
if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # pragma: no cover
    from async_timeout import timeout as deadline

__all__ = ["deadline"]
