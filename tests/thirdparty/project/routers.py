"""Keep channels-postgres's tables on its own database, the rest off it."""

from __future__ import annotations

from typing import Any


class ChannelsPostgresRouter:
    """Migrate the ``channels_postgres`` app only on the ``channels_postgres``
    alias, and every other app only elsewhere."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return (app_label == "channels_postgres") == (db == "channels_postgres")
