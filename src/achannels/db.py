"""Run Django ORM code from async consumers without leaking connections.

Django only. Django's database connections belong to the thread that opened
them and are closed by ``close_old_connections()`` at the edges of a request;
a consumer has no request, so these helpers do that cleanup around the code
they run. (They are defined in the Django-free ``achannels._db`` so that the
consumer modules can re-export them; they call this module's
``close_old_connections``, which tests may patch.)
"""

from __future__ import annotations

from asgiref.sync import SyncToAsync as SyncToAsync
from asgiref.sync import sync_to_async as sync_to_async
from django.db import close_old_connections as close_old_connections

from ._db import DatabaseSyncToAsync, aclose_old_connections, database_sync_to_async

__all__ = ["DatabaseSyncToAsync", "aclose_old_connections", "database_sync_to_async"]
