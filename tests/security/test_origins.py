"""Origin checks through a real server, with the exact header bytes a client
(or an attacker's script outside a browser) can send.

The route allows ``example.com`` (any scheme and port), ``.example.org``
(the domain and its subdomains) and ``https://secure.example.net:8443``
(exactly). A refused handshake is an HTTP 403; an accepted one a 101.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.reliability import APP, handshake_status
from tests.support.servers import RunningServer, serve

ROUTE = "/ws/origin/"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # uvicorn's legacy websockets implementation answers 500 to any non-ASCII
    # header byte before the application runs; wsproto passes them on.
    with serve(APP, "uvicorn-wsproto") as running:
        yield running


ALLOWED = [
    "https://example.com",
    "http://example.com",
    "http://example.com:8080",
    "wss://example.com",
    "HTTPS://EXAMPLE.COM",
    "https://Example.Com",
    "https://example.org",
    "https://chat.example.org",
    "https://a.b.example.org:444",
    "https://secure.example.net:8443",
    "HTTPS://SECURE.EXAMPLE.NET:8443",
]

REFUSED = [
    "null",
    "",
    "example.com",  # no scheme
    "https://example.com.evil.com",
    "https://evilexample.com",
    "https://evil-example.com",
    "https://sub.example.com",  # "example.com" has no leading dot
    "https://example.org.evil.com",
    "https://xexample.org",
    "https://example.org\\@evil.com",
    "https://example.com@evil.com",  # the host is evil.com
    "https://evil.com@example.com",  # credentials are never in an origin
    "https://evil.com#@example.com",
    "https://evil.com/.example.org",
    "https://example.com/path",
    "https://example.com?x=1",
    "https://example.com.",  # trailing dot: another name to a browser
    "https://example.com:99999",
    "https://example.com:port",
    "https://secure.example.net",  # port 443, not 8443
    "http://secure.example.net:8443",  # wrong scheme
    "https://secure.example.net:8444",
    "https://example.com, https://evil.com",
    "https://ex\u0430mple.com",  # Cyrillic "a": a homograph
    "https://xn--exmple-4nf.com",  # its punycode
    "file://",
    "https://127.0.0.1",
]


@pytest.mark.parametrize("origin", ALLOWED)
async def test_allowed_origin_connects(server: RunningServer, origin: str) -> None:
    assert await handshake_status(server, ROUTE, [("Origin", origin)]) == 101


@pytest.mark.parametrize("origin", REFUSED)
async def test_foreign_or_malformed_origin_is_refused(
    server: RunningServer, origin: str
) -> None:
    headers = [("Origin", origin)]
    try:
        status = await handshake_status(server, ROUTE, headers)
    except UnicodeEncodeError:
        # Not even sendable as a header: HTTP header values are bytes.
        headers = [("Origin", origin.encode().decode("latin-1"))]
        status = await handshake_status(server, ROUTE, headers)
    assert status == 403


async def test_missing_origin_is_refused(server: RunningServer) -> None:
    assert await handshake_status(server, ROUTE, []) == 403


@pytest.mark.parametrize(
    "origins",
    [
        ["https://example.com", "https://evil.com"],
        ["https://evil.com", "https://example.com"],
        ["https://example.com", "https://example.com"],
    ],
)
async def test_repeated_origin_headers_are_refused(
    server: RunningServer, origins: list[str]
) -> None:
    headers = [("Origin", origin) for origin in origins]
    assert await handshake_status(server, ROUTE, headers) == 403


async def test_other_headers_cannot_stand_in_for_origin(server: RunningServer) -> None:
    headers = [
        ("Sec-WebSocket-Origin", "https://example.com"),
        ("Referer", "https://example.com/chat"),
        ("X-Forwarded-Host", "example.com"),
        ("Forwarded", "host=example.com;proto=https"),
    ]
    assert await handshake_status(server, ROUTE, headers) == 403
