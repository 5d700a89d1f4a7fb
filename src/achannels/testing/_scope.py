"""Scope pieces the communicators share, built as an ASGI server would."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["normalize_headers", "split_path"]

# Characters a client sends unescaped in a path; anything else in the test's
# path string is percent-encoded for ``raw_path`` as it would be on the wire.
_PATH_SAFE = "/%:@!$&'()*+,;=~"


def _header_bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def normalize_headers(
    headers: Iterable[Sequence[str | bytes]] | None,
) -> list[tuple[bytes, bytes]]:
    """Return ``headers`` as ASGI wants them: ``(lowercase name, value)`` bytes."""
    return [
        (_header_bytes(name).lower(), _header_bytes(value))
        for name, value in (headers or ())
    ]


def split_path(path: str) -> dict[str, Any]:
    """Return the ``path``, ``raw_path`` and ``query_string`` scope keys."""
    if not isinstance(path, str):
        raise TypeError(f"Expected str, got {type(path)}")
    parsed = urlsplit(path)
    return {
        "path": unquote(parsed.path),
        "raw_path": quote(parsed.path, safe=_PATH_SAFE).encode("ascii"),
        "query_string": parsed.query.encode("utf-8"),
    }
