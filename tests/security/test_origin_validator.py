"""OriginValidator decides on the Origin header alone, without Django."""

from __future__ import annotations

import pytest

from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.security.websocket import OriginValidator
from achannels.testing import WebsocketCommunicator


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


async def connects(allowed: list[str], *origins: bytes) -> bool:
    app = OriginValidator(Accepting.as_asgi(), allowed)
    headers = [(b"origin", origin) for origin in origins]
    communicator = WebsocketCommunicator(app, "/ws/", headers=headers)
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    else:
        await communicator.wait()
    return connected


@pytest.mark.parametrize(
    ("pattern", "origin"),
    [
        ("example.com", b"https://example.com"),
        ("example.com", b"http://example.com:8080"),
        ("EXAMPLE.com", b"http://example.COM"),
        (".example.com", b"https://example.com"),
        (".example.com", b"https://chat.eu.example.com"),
        ("example.com:8443", b"https://example.com:8443"),
        ("https://example.com", b"https://example.com"),
        ("https://example.com", b"https://example.com:443"),
        ("http://example.com:80", b"http://example.com"),
        ("https://.example.com", b"https://www.example.com"),
        ("https://.example.com:8443", b"https://a.example.com:8443"),
        ("[::1]", b"http://[::1]:8000"),
        ("127.0.0.1", b"http://127.0.0.1:8000"),
        ("*", b"https://anything.test"),
    ],
)
async def test_matching_origin_connects(pattern: str, origin: bytes) -> None:
    assert await connects([pattern], origin)


@pytest.mark.parametrize(
    ("pattern", "origin"),
    [
        ("example.com", b"https://evil.test"),
        ("example.com", b"https://www.example.com"),
        ("example.com", b"https://example.com.evil.test"),
        ("example.com", b"https://notexample.com"),
        (".example.com", b"https://badexample.com"),
        ("example.com:8443", b"https://example.com"),
        ("https://example.com", b"http://example.com"),
        ("https://example.com", b"https://example.com:8443"),
        ("http://example.com", b"http://example.com:8080"),
        ("https://.example.com", b"http://www.example.com"),
        ("[::1]", b"http://127.0.0.1"),
    ],
)
async def test_foreign_origin_is_denied(pattern: str, origin: bytes) -> None:
    assert not await connects([pattern], origin)


@pytest.mark.parametrize(
    "origin",
    [
        b"null",
        b"example.com",
        b"https://",
        b"https://example.com:notaport",
        b"https://[::1",
        b"https://user@example.com",
        b"https://evil.test@example.com",
        b"https://example.com/path",
        b"https://example.com?q=1",
        b"https://ex\xe4mple.com",
    ],
)
async def test_malformed_origin_is_denied_unless_star(origin: bytes) -> None:
    assert not await connects(["example.com", ".example.com"], origin)
    assert await connects(["*"], origin)


async def test_missing_origin_is_denied_unless_star() -> None:
    assert not await connects(["example.com"])
    assert await connects(["example.com", "*"])


async def test_two_origin_headers_are_denied() -> None:
    assert not await connects(
        ["example.com"], b"https://example.com", b"https://example.com"
    )


async def test_denial_is_a_close_before_accept() -> None:
    app = OriginValidator(Accepting.as_asgi(), ["example.com"])
    communicator = WebsocketCommunicator(
        app, "/ws/", headers=[(b"origin", b"https://evil.test")]
    )
    assert await communicator.connect() == (False, 1000)
    await communicator.wait()


async def test_non_websocket_scope_raises_value_error() -> None:
    app = OriginValidator(Accepting.as_asgi(), ["*"])

    async def receive() -> dict[str, object]:
        raise AssertionError("not reached")

    async def send(message: dict[str, object]) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="non-WebSocket"):
        await app({"type": "http", "headers": []}, receive, send)
