"""The Django-free half of :mod:`achannels.db`.

``database_sync_to_async`` and ``aclose_old_connections`` are defined here so
that Channels' consumer modules can re-export them eagerly without importing
Django at import time; Django is imported when they first run, through
:mod:`achannels.db` (whose ``close_old_connections`` global code and tests may
patch, as Channels' tests patch ``channels.db.close_old_connections``).
"""

from __future__ import annotations

import asyncio
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async

from ._django import connections_must_stay_open

__all__ = ["DatabaseSyncToAsync", "aclose_old_connections", "database_sync_to_async"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class DatabaseSyncToAsync(SyncToAsync[_P, _R]):
    """``asgiref.sync.SyncToAsync`` that closes stale database connections in
    the worker thread before and after the wrapped function runs.

    Use it like ``sync_to_async``: as a decorator (``@database_sync_to_async``)
    or a wrapper (``await database_sync_to_async(func)(*args)``), with the
    same ``thread_sensitive`` and ``executor`` keywords. Awaiting it returns
    what the function returns and raises what it raises. While a test
    communicator call is in progress it closes nothing, as in Channels.
    """

    def thread_handler(
        self, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any
    ) -> Any:
        # Runs in the worker thread, which is the thread owning the
        # connections the function will use: clean them up there.
        _close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            _close_old_connections()


DatabaseSyncToAsync.__module__ = "achannels.db"


def _close_old_connections() -> None:
    if connections_must_stay_open():
        return
    # Looked up in achannels.db at each call (importing Django the first
    # time), so a patched ``achannels.db.close_old_connections`` is obeyed.
    from . import db

    db.close_old_connections()


# Channels spells the decorator in lower case; the class stays available for
# subclassing under its own name.
database_sync_to_async = DatabaseSyncToAsync


async def aclose_old_connections() -> None:
    """Close the database connections that are unusable or older than
    ``CONN_MAX_AGE``, from async code (in the thread-sensitive sync thread,
    where ``database_sync_to_async`` code runs by default). Does nothing
    while a test communicator call is in progress."""
    await sync_to_async(_close_old_connections)()


aclose_old_connections.__module__ = "achannels.db"
