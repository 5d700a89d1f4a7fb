"""Property tests of routing: whatever path a client sends, the router calls
one application with well-typed captured values or raises the documented
``ValueError("No route found for path ...")``; whatever route a developer
writes, ``path()``/``re_path()`` build it or raise ``ValueError``/``TypeError``.

Real servers get the nastiest paths as raw request lines, too: they answer
each with an HTTP error (500 for "no route", as under Channels, where the
router's ``ValueError`` reaches the server) and keep serving.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from achannels._types import ASGIApp, Message, Receive, Scope, Send
from achannels.middleware import BaseMiddleware
from achannels.routing import URLRouter, path, re_path
from tests.support.reliability import APP, TIMEOUT
from tests.support.servers import RunningServer, serve

Calls = list[tuple[str, dict[str, Any], tuple[Any, ...]]]


def endpoint(label: str, calls: Calls) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        route = scope["url_route"]
        calls.append((label, route["kwargs"], route["args"]))

    return app


class PassThrough(BaseMiddleware):
    """A middleware that only copies the scope, as most do."""


def make_router(calls: Calls) -> URLRouter:
    return URLRouter(
        [
            path("room/<int:n>/", endpoint("int", calls)),
            path("u/<uuid:u>/", endpoint("uuid", calls)),
            path("s/<slug:s>/", endpoint("slug", calls)),
            path("p/<path:rest>", endpoint("path", calls)),
            re_path(r"^r/(?P<x>[^/]+)/$", endpoint("re", calls)),
            re_path(r"^pos/(\d+)/(\w+)/$", endpoint("positional", calls)),
            path(
                "nested/<slug:outer>/",
                URLRouter([path("<str:inner>/", endpoint("nested", calls))]),
            ),
            path(
                "mw/",
                PassThrough(URLRouter([path("<int:k>/", endpoint("mw", calls))])),
            ),
            path("<str:free>/end/", endpoint("str", calls)),
        ]
    )


KWARG_TYPES: dict[str, dict[str, type]] = {
    "int": {"n": int},
    "uuid": {"u": uuid.UUID},
    "slug": {"s": str},
    "path": {"rest": str},
    "re": {"x": str},
    "positional": {},
    "nested": {"outer": str, "inner": str},
    "mw": {"k": int},
    "str": {"free": str},
}


async def never_receive() -> Message:
    raise AssertionError("routing must not receive")


async def never_send(message: Message) -> None:
    raise AssertionError("routing must not send")


async def route(path_: str, root_path: str = "") -> Calls:
    """Route ``path_`` and return what was called; documented errors raise."""
    calls: Calls = []
    scope = {"type": "websocket", "path": path_, "root_path": root_path}
    await make_router(calls)(scope, never_receive, never_send)
    return calls


segments = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "room",
            "u",
            "s",
            "p",
            "r",
            "pos",
            "nested",
            "mw",
            "end",
            "..",
            ".",
            "",
            "9" * 5000,  # more digits than int() accepts
            "-1",
            "0x10",
            "\uff11\uff12",  # fullwidth digits
            str(uuid.uuid4()),
            str(uuid.uuid4()).upper(),
            "%2F",
            "\x00",
            "\ud800",  # a lone surrogate
        ]
    ),
)
paths = st.one_of(
    st.lists(segments, max_size=6).map("/".join),
    st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts) + "/"),
    st.text(),
)


def check_documented(calls: Calls) -> None:
    assert len(calls) == 1, calls
    label, kwargs, args = calls[0]
    types = KWARG_TYPES[label]
    assert set(kwargs) == set(types), calls
    for name, kind in types.items():
        assert isinstance(kwargs[name], kind), calls
    if label == "positional":
        assert len(args) == 2 and all(isinstance(a, str) for a in args)


@settings(max_examples=500, deadline=None)
@given(path_=paths)
async def test_any_path_routes_to_one_app_or_no_route_error(path_: str) -> None:
    try:
        calls = await route(path_)
    except ValueError as error:
        assert str(error).startswith("No route found for path"), error
        return
    check_documented(calls)


@settings(max_examples=200, deadline=None)
@given(path_=paths, root_path=st.one_of(st.just(""), st.text(max_size=8)))
async def test_any_root_path_routes_or_no_route_error(
    path_: str, root_path: str
) -> None:
    try:
        calls = await route(root_path + path_, root_path)
    except ValueError as error:
        assert str(error).startswith("No route found for path"), error
        return
    check_documented(calls)


async def test_integer_beyond_int_limit_is_no_route_not_a_crash() -> None:
    with pytest.raises(ValueError, match="No route found"):
        await route("room/" + "9" * 5000 + "/")
    assert (await route("room/" + "9" * 100 + "/"))[0][1]["n"] == int("9" * 100)


route_text = st.one_of(
    st.text(max_size=20),
    st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                ":",
                "int",
                "str",
                "x",
                "foo",
                "/",
                "(",
                ")",
                "?P",
                "[",
                "*",
                "\\",
                "^",
                "$",
                "a",
            ]
        ),
        max_size=10,
    ).map("".join),
)


# re warns (FutureWarning) about "[[" and the like, which may change meaning
# in a later Python; a warning to the developer, not an error of ours.
@pytest.mark.filterwarnings("ignore::FutureWarning")
@settings(max_examples=400, deadline=None)
@given(text=route_text, probe=paths)
async def test_any_route_text_builds_or_raises_value_error(
    text: str, probe: str
) -> None:
    calls: Calls = []
    for build in (path, re_path):
        try:
            pattern = build(text, endpoint("fuzzed", calls))
        except ValueError as error:
            assert str(error)
            continue
        try:
            await URLRouter([pattern])(
                {"type": "websocket", "path": probe}, never_receive, never_send
            )
        except ValueError as error:
            assert str(error).startswith("No route found for path"), error


async def test_route_arguments_of_wrong_types_raise_type_error() -> None:
    app = endpoint("x", [])
    with pytest.raises(TypeError):
        path("a/", "not an app")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        path("a/", app, kwargs=["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        URLRouter(["not a route"])
    with pytest.raises(ValueError, match="No 'path' key"):
        await URLRouter([path("a/", app)])(
            {"type": "websocket"}, never_receive, never_send
        )


# Raw request lines through a real server


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind) as running:
        yield running


def _status_of(host: str, port: int, target: bytes) -> int | None:
    with socket.create_connection((host, port), TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(1024)
            if not chunk:
                return None  # the server hung up: also an answer
            response += chunk
    return int(response.split(b" ", 2)[1])


NASTY_TARGETS = [
    b"/",
    b"/ws/",
    b"/ws/member/%00/",
    b"/ws/member/%ff%fe/",
    b"/ws/member/%2e%2e%2f%2e%2e/",
    b"/ws/member/a%2Fb/",
    b"/ws/linger/" + b"9" * 5000 + b"/",
    b"/ws/member/" + b"x" * 8000 + b"/",
    b"/ws/member/\xff/",
    b"//ws//member//x//",
    b"*",
    b"http://evil.com/ws/echo/",
    b"/ws/member/%u0041/",
]


async def test_nasty_request_targets_get_an_error_and_the_server_goes_on(
    server: RunningServer,
) -> None:
    for target in NASTY_TARGETS:
        status = await asyncio.to_thread(_status_of, server.host, server.port, target)
        assert status is None or 400 <= status < 600, (target, status)
    # Still serving, and nothing was left behind.
    for target in (b"/ws/member/fine/", b"/ws/member/fine/?%ff=%00&&&="):
        status = await asyncio.to_thread(_status_of, server.host, server.port, target)
        assert status == 101, target
