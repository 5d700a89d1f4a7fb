"""PostgreSQL for the tests: a scratch database of the test's own.

``require_postgres()`` skips the test when no server answers at
``ACHANNELS_TEST_PG_HOST:ACHANNELS_TEST_PG_PORT`` (default 127.0.0.1:5432,
user ``postgres``, trust auth), or fails it when ``CI=true``.
``scratch_database()`` creates a uniquely named database and drops it at the
end: never the shared ``test`` database, whose NOTIFY channels and rows other
users would see.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

__all__ = ["PG_HOST", "PG_PORT", "require_postgres", "scratch_database"]

PG_HOST = os.environ.get("ACHANNELS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("ACHANNELS_TEST_PG_PORT", "5432")


def _connect(dbname: str = "postgres") -> object:
    import psycopg

    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user="postgres",
        dbname=dbname,
        autocommit=True,
        connect_timeout=2,
    )


def require_postgres() -> None:
    """Skip (or fail under ``CI=true``) unless PostgreSQL answers."""
    import psycopg

    try:
        with _connect():  # type: ignore[attr-defined]
            return
    except psycopg.OperationalError as exc:
        reason = f"no PostgreSQL answers at {PG_HOST}:{PG_PORT} ({exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def scratch_database() -> Iterator[str]:
    """Create a database no other test uses; drop it (and its sessions)
    afterwards."""
    require_postgres()
    name = f"achannels_test_{uuid.uuid4().hex[:12]}"
    with _connect() as admin:  # type: ignore[attr-defined]
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _connect() as admin:  # type: ignore[attr-defined]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
