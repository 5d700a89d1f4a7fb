"""What a scenario observed, printed as JSON for the conformance runner.

Scenarios import this module and ``channels`` only: the same file runs on
the real Channels wheel and on achannels (through ``install_as_channels()``).
Each entry says how the runner compares the two sides:

- ``equal``: the values must be equal.
- ``prefix``: achannels' text must start with Channels' (ours may add detail).
- ``superset``: achannels' list must hold every item of Channels' list.
- ``raised``: an exception; achannels' must be an instance of every class
  Channels' was (by name: ours may be a subclass, such as an
  ``AssertionError`` that is also a ``ValueError``), and its message must
  start with Channels' message.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Transcript", "configure_django", "redis_url", "scratch_dir"]


def _plain(value: Any) -> Any:
    """``value`` as JSON would carry it (tuples as lists, bytes as text)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


class Transcript:
    """Entries in the order the scenario observed them."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._labels: set[str] = set()

    def _add(self, label: str, kind: str, value: Any) -> None:
        # The runner matches the two sides' entries by label.
        if label in self._labels:
            raise ValueError(f"label {label!r} recorded twice")
        self._labels.add(label)
        self.entries.append({"label": label, kind: value})

    def equal(self, label: str, value: Any) -> None:
        self._add(label, "equal", _plain(value))

    def prefix(self, label: str, text: str) -> None:
        self._add(label, "prefix", str(text))

    def superset(self, label: str, items: Any) -> None:
        self._add(label, "superset", sorted(map(str, items)))

    def raised(self, label: str, exc: BaseException) -> None:
        types = [cls.__name__ for cls in type(exc).__mro__ if cls is not object]
        self._add(label, "raised", {"types": types, "message": str(exc)})

    def call(self, label: str, function: Callable[..., Any], *args: Any) -> Any:
        """Record what ``function(*args)`` returned, or raised."""
        try:
            result = function(*args)
        except BaseException as exc:  # a scenario records even cancellation
            self.raised(label, exc)
            return None
        self.equal(label, result)
        return result

    async def outcome(self, label: str, awaitable: Awaitable[Any]) -> Any:
        """Record what ``awaitable`` returned, or raised."""
        try:
            result = await awaitable
        except BaseException as exc:  # CancelledError from a communicator too
            self.raised(label, exc)
            return None
        self.equal(label, result)
        return result

    def dump(self) -> None:
        print(json.dumps({"transcript": self.entries}))


def scratch_dir() -> str:
    """A directory of this run's own (the runner makes one per side)."""
    return os.environ["CONFORMANCE_TMP"]


def redis_url() -> str | None:
    """The test Redis (``ACHANNELS_TEST_REDIS_URL``), or None when nothing
    listens there; both sides then record the same "no Redis" transcript."""
    url = os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), 1):
            return url
    except OSError:
        return None


def configure_django(**overrides: Any) -> None:
    """Configure and set up Django as a small Channels project: ``"channels"``
    installed, the in-memory layer, SQLite in memory, plus ``overrides``."""
    from django.conf import settings

    import django

    options: dict[str, Any] = {
        "SECRET_KEY": "conformance",
        "INSTALLED_APPS": [
            "channels",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        },
        "CHANNEL_LAYERS": {
            "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
        },
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    }
    options.update(overrides)
    settings.configure(**options)
    django.setup()
