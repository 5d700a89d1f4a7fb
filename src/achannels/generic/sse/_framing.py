"""The ``text/event-stream`` wire format: events and comments as bytes.

Framing follows the HTML standard's event stream grammar: a field per line,
``data`` split into one line per line of the payload (a CR, LF or CRLF ends
a line, so ``str.splitlines`` is not the splitter: it also breaks on form
feeds and Unicode separators, which the parser keeps as data), an empty line
ending the event. ``event`` and ``id`` cannot hold a line break; an ``id``
with NUL is ignored by browsers, so both are refused here.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["HEARTBEAT", "encode_comment", "encode_data", "encode_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

#: The comment sent when the stream was quiet for a heartbeat interval: an
#: empty comment line and a blank line (proxies see bytes; clients ignore it).
HEARTBEAT = b":\n\n"


def _plain(value: str) -> bool:
    return "\n" not in value and "\r" not in value and "\0" not in value


def encode_data(data: Any) -> str:
    """``data`` as the text of an event: a ``str`` as it is, anything else
    as compact JSON (``TypeError`` if JSON cannot carry it)."""
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _single_line(field: str, value: str) -> str:
    if _LINE_BREAK.search(value) or "\0" in value:
        raise ValueError(
            f"SSE {field} {value!r} contains a line break or NUL; "
            f"{field} must be a single line"
        )
    return value


def encode_event(
    data: Any,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event, ready to write: ``event:``, ``id:``, ``retry:`` and one
    ``data:`` line per line of ``data``, then a blank line."""
    if data.__class__ is str and "\n" not in data and "\r" not in data:
        # The per-event path: one line of text, at most an event type and id.
        if (
            retry is None
            and (event is None or _plain(event))
            and (id is None or _plain(id))
        ):
            head = "" if event is None else f"event: {event}\n"
            if id is not None:
                head += f"id: {id}\n"
            return f"{head}data: {data}\n\n".encode()
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {_single_line('event', event)}\n")
    if id is not None:
        parts.append(f"id: {_single_line('id', id)}\n")
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise ValueError(
                f"SSE retry must be a non-negative int of milliseconds, got {retry!r}"
            )
        parts.append(f"retry: {retry}\n")
    # A space after the colon: the parser drops exactly one, so data that
    # starts with a space keeps it.
    for line in _LINE_BREAK.split(encode_data(data)):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment block (one ``:`` line per line of ``text``); clients ignore
    it, proxies see traffic."""
    lines = _LINE_BREAK.split(text)
    return ("".join(f":{' ' if line else ''}{line}\n" for line in lines) + "\n").encode(
        "utf-8"
    )
