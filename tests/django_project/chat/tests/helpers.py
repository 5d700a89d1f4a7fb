"""Shared helpers for the sample project's tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

#: Every network wait in these tests ends within this many seconds.
DEADLINE = 10


async def ws_first_json(
    url: str,
    *,
    origin: str | None,
    cookies: dict[str, str] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    send: Any = None,
) -> tuple[Any, list[str]]:
    """Connect, optionally send one JSON message, return the first JSON
    message received and the handshake response's Set-Cookie headers."""
    extra = list(headers)
    if cookies:
        extra.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    async with connect(
        url,
        origin=Origin(origin) if origin else None,
        additional_headers=extra,
        open_timeout=DEADLINE,
        close_timeout=DEADLINE,
    ) as websocket:
        assert websocket.response is not None
        set_cookies = websocket.response.headers.get_all("Set-Cookie")
        if send is not None:
            await websocket.send(json.dumps(send))
        reply = json.loads(await asyncio.wait_for(websocket.recv(), DEADLINE))
    return reply, set_cookies


async def ws_handshake_status(url: str, *, origin: str | None) -> int:
    """101 when the server accepts the WebSocket, else the refusal status."""
    try:
        async with connect(
            url,
            origin=Origin(origin) if origin else None,
            open_timeout=DEADLINE,
            close_timeout=DEADLINE,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def cookie_values(set_cookies: list[str]) -> dict[str, Any]:
    """Parse Set-Cookie header values into name -> Morsel."""
    jar: SimpleCookie = SimpleCookie()
    for header in set_cookies:
        jar.load(header)
    return dict(jar)
