"""Lazy bridges to Django for the core modules.

The core must work without Django installed and must not import it at module
import time, so everything here imports Django inside the function that needs
it and answers "no" cheaply when Django is absent or unconfigured.
"""

from __future__ import annotations

import sys

__all__ = [
    "close_old_connections",
    "django_database_in_use",
    "django_settings_configured",
]


def django_settings_configured() -> bool:
    """True when Django is importable and its settings are configured."""
    # Only look if the program already imported Django: a core module must
    # never be the one that drags Django in.
    conf = sys.modules.get("django.conf")
    if conf is None:
        return False
    return bool(conf.settings.configured)


def django_database_in_use() -> bool:
    """True when Django is configured with at least one database."""
    if not django_settings_configured():
        return False
    from django.conf import settings

    return bool(getattr(settings, "DATABASES", None))


def close_old_connections() -> None:
    """Close Django database connections that are unusable or past their age.

    Does nothing unless Django is configured with a database. Call it from
    the thread that owns the connections (Django's connections are per
    thread), before and after running user code there.
    """
    if not django_database_in_use():
        return
    from django.db import close_old_connections as close_django_connections

    close_django_connections()
