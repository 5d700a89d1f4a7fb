"""Routers: protocol, URL and channel-name dispatch, lifespan, path syntax."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from achannels._types import ASGIApp, Message, Receive, Scope, Send
from achannels.consumer import AsyncConsumer
from achannels.exceptions import StopConsumer
from achannels.layers import InMemoryChannelLayer, channel_layers
from achannels.middleware import BaseMiddleware
from achannels.routing import (
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
    path,
    re_path,
    register_converter,
)
from tests.support.subprocesses import run_python

Seen = list[tuple[str, Scope]]


def endpoint(name: str, seen: Seen) -> ASGIApp:
    """An ASGI app that records which endpoint ran and the scope it got."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((name, scope))

    return app


async def never_receive() -> Message:
    raise AssertionError("routing must not receive")


async def never_send(message: Message) -> None:
    raise AssertionError("routing must not send")


# --- URLRouter with achannels.routing.path / re_path -------------------------


async def test_literal_path_routes_and_sets_empty_url_route() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            path("ws/other/", endpoint("other", seen)),
            path("ws/chat/", endpoint("chat", seen)),
        ]
    )
    scope: Scope = {"type": "websocket", "path": "/ws/chat/"}
    await router(scope, never_receive, never_send)
    [(name, got)] = seen
    assert name == "chat"
    assert got["url_route"] == {"args": (), "kwargs": {}}
    assert got["path"] == "/ws/chat/"
    assert got["path_remaining"] == ""


async def test_router_does_not_mutate_the_callers_scope() -> None:
    seen: Seen = []
    router = URLRouter([path("room/<int:pk>/", endpoint("room", seen))])
    scope: Scope = {"type": "websocket", "path": "/room/3/"}
    before = dict(scope)
    await router(scope, never_receive, never_send)
    assert scope == before
    assert seen[0][1] is not scope


async def test_literal_endpoint_does_not_match_longer_path() -> None:
    seen: Seen = []
    router = URLRouter([path("ws/chat/", endpoint("chat", seen))])
    with pytest.raises(ValueError, match=r"No route found for path 'ws/chat/extra/'\."):
        await router(
            {"type": "websocket", "path": "/ws/chat/extra/"}, never_receive, never_send
        )
    assert seen == []


@pytest.mark.parametrize(
    ("route_", "path_", "expected"),
    [
        ("r/<int:n>/", "/r/42/", {"n": 42}),
        ("r/<str:s>/", "/r/a-b.c/", {"s": "a-b.c"}),
        ("r/<s>/", "/r/plain/", {"s": "plain"}),
        ("r/<slug:s>/", "/r/my-slug_1/", {"s": "my-slug_1"}),
        ("r/<path:p>", "/r/a/b/c.txt", {"p": "a/b/c.txt"}),
        (
            "r/<uuid:u>/",
            "/r/6f1c1e6a-2b7a-4f2e-9d3c-1a2b3c4d5e6f/",
            {"u": uuid.UUID("6f1c1e6a-2b7a-4f2e-9d3c-1a2b3c4d5e6f")},
        ),
        ("r/<int:a>/<slug:b>/", "/r/1/x/", {"a": 1, "b": "x"}),
    ],
)
async def test_path_converters_capture_typed_kwargs(
    route_: str, path_: str, expected: dict[str, Any]
) -> None:
    seen: Seen = []
    router = URLRouter([path(route_, endpoint("e", seen))])
    await router({"type": "websocket", "path": path_}, never_receive, never_send)
    assert seen[0][1]["url_route"] == {"args": (), "kwargs": expected}
    assert type(seen[0][1]["url_route"]["kwargs"]) is dict


@pytest.mark.parametrize(
    ("route_", "path_"),
    [
        ("r/<int:n>/", "/r/x/"),
        ("r/<str:s>/", "/r/a/b/"),
        ("r/<slug:s>/", "/r/a.b/"),
        ("r/<uuid:u>/", "/r/6F1C1E6A-2B7A-4F2E-9D3C-1A2B3C4D5E6F/"),
        ("r/<str:s>/", "/r//"),
    ],
)
async def test_path_converters_reject_what_they_do_not_match(
    route_: str, path_: str
) -> None:
    router = URLRouter([path(route_, endpoint("e", []))])
    with pytest.raises(ValueError, match="No route found for path"):
        await router({"type": "websocket", "path": path_}, never_receive, never_send)


class EvenConverter:
    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        if int(value) % 2:
            raise ValueError("odd")
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


async def test_registered_converter_value_error_falls_through_to_next_route() -> None:
    register_converter(EvenConverter, "test_even")
    seen: Seen = []
    router = URLRouter(
        [
            path("n/<test_even:n>/", endpoint("even", seen)),
            path("n/<int:n>/", endpoint("any", seen)),
        ]
    )
    await router({"type": "websocket", "path": "/n/4/"}, never_receive, never_send)
    await router({"type": "websocket", "path": "/n/5/"}, never_receive, never_send)
    assert [(name, s["url_route"]["kwargs"]) for name, s in seen] == [
        ("even", {"n": 4}),
        ("any", {"n": 5}),
    ]


def test_register_converter_rejects_object_without_regex() -> None:
    class NoRegex:
        def to_python(self, value: str) -> str:
            return value

    with pytest.raises(TypeError, match="lacks regex"):
        register_converter(NoRegex, "test_broken")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("route_", "message"),
    [
        ("r/<nope:x>/", "invalid converter 'nope'"),
        ("r/<int:1x>/", "parameter name '1x' which isn't a valid Python identifier"),
        ("r/<int: x>/", "cannot contain whitespace"),
        ("r/<a>/<a>/", "parameter name 'a' twice"),
    ],
)
def test_path_rejects_bad_routes_with_a_clear_message(
    route_: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        path(route_, endpoint("e", []))


def test_re_path_rejects_invalid_regex() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        re_path(r"^(unclosed/", endpoint("e", []))


def test_path_rejects_non_callable_view_and_non_dict_kwargs() -> None:
    with pytest.raises(TypeError, match="view must be an ASGI application"):
        path("x/", "not.an.app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="kwargs argument must be a dict"):
        path("x/", endpoint("e", []), kwargs=[("a", 1)])  # type: ignore[arg-type]


def test_url_router_rejects_objects_that_are_not_routes() -> None:
    with pytest.raises(TypeError, match=r"must come from path\(\) or re_path\(\)"):
        URLRouter([endpoint("e", [])])


async def test_re_path_named_groups_are_kwargs_unnamed_are_args() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            re_path(r"^named/(?P<room>\w+)/(?P<opt>\d+)?$", endpoint("named", seen)),
            re_path(r"^pos/(\d+)/(\w+)/$", endpoint("pos", seen)),
        ]
    )
    await router(
        {"type": "websocket", "path": "/named/lobby/"}, never_receive, never_send
    )
    await router(
        {"type": "websocket", "path": "/named/lobby/7"}, never_receive, never_send
    )
    await router(
        {"type": "websocket", "path": "/pos/12/ab/"}, never_receive, never_send
    )
    routes = [s["url_route"] for _, s in seen]
    assert routes == [
        {"args": (), "kwargs": {"room": "lobby"}},
        {"args": (), "kwargs": {"room": "lobby", "opt": "7"}},
        {"args": ("12", "ab"), "kwargs": {}},
    ]


async def test_re_path_endpoint_with_dollar_must_match_whole_path() -> None:
    router = URLRouter([re_path(r"^chat/$", endpoint("e", []))])
    with pytest.raises(ValueError, match="No route found"):
        await router(
            {"type": "websocket", "path": "/chat/more"}, never_receive, never_send
        )


async def test_route_kwargs_are_added_to_url_route_and_win_over_captures() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            path(
                "r/<str:mode>/<int:n>/",
                endpoint("e", seen),
                kwargs={"mode": "fixed", "x": 1},
            )
        ]
    )
    await router({"type": "websocket", "path": "/r/free/3/"}, never_receive, never_send)
    assert seen[0][1]["url_route"]["kwargs"] == {"mode": "fixed", "n": 3, "x": 1}


async def test_nested_routers_merge_args_and_kwargs_of_every_level() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            path(
                "org/<int:org>/",
                URLRouter(
                    [
                        re_path(r"^team/(\d+)/", URLRouter([
                            path("user/<name>/", endpoint("u", seen), kwargs={"x": 1}),
                        ])),
                    ]
                ),
                kwargs={"outer": True},
            )
        ]
    )  # fmt: skip
    await router(
        {"type": "websocket", "path": "/org/5/team/9/user/ann/"},
        never_receive,
        never_send,
    )
    [(name, scope)] = seen
    assert name == "u"
    assert scope["url_route"] == {
        "args": ("9",),
        "kwargs": {"org": 5, "outer": True, "name": "ann", "x": 1},
    }
    assert scope["path_remaining"] == ""


async def test_nested_router_without_match_lets_outer_try_next_route() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            path("api/", URLRouter([path("a/", endpoint("first-a", seen))])),
            path("api/", URLRouter([path("b/", endpoint("second-b", seen))])),
            path("api/<path:rest>", endpoint("catch-all", seen)),
        ]
    )
    for path_ in ("/api/a/", "/api/b/", "/api/c/"):
        await router({"type": "websocket", "path": path_}, never_receive, never_send)
    assert [name for name, _ in seen] == ["first-a", "second-b", "catch-all"]


async def test_nested_router_no_match_anywhere_raises_value_error() -> None:
    router = URLRouter([path("api/", URLRouter([path("a/", endpoint("a", []))]))])
    with pytest.raises(ValueError, match=r"No route found for path 'api/zzz/'\."):
        await router(
            {"type": "websocket", "path": "/api/zzz/"}, never_receive, never_send
        )


class TagMiddleware(BaseMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return await super().__call__(dict(scope, tag="seen"), receive, send)


async def test_router_behind_middleware_nests_and_backtracks() -> None:
    seen: Seen = []
    router = URLRouter(
        [
            path(
                "chat/<int:room>/",
                TagMiddleware(URLRouter([path("in/", endpoint("in", seen))])),
            ),
            path("chat/<int:room>/<path:rest>", endpoint("fallback", seen)),
        ]
    )
    await router(
        {"type": "websocket", "path": "/chat/1/in/"}, never_receive, never_send
    )
    await router(
        {"type": "websocket", "path": "/chat/2/out/"}, never_receive, never_send
    )
    assert [(n, s["url_route"]["kwargs"], s.get("tag")) for n, s in seen] == [
        ("in", {"room": 1}, "seen"),
        ("fallback", {"room": 2, "rest": "out/"}, None),
    ]


async def test_exception_from_endpoint_is_not_taken_for_a_missing_route() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("boom")

    seen: Seen = []
    router = URLRouter(
        [
            path("x/", TagMiddleware(URLRouter([path("y/", broken)]))),
            path("x/y/", endpoint("shadowed", seen)),
        ]
    )
    with pytest.raises(LookupError, match="boom"):
        await router({"type": "websocket", "path": "/x/y/"}, never_receive, never_send)
    assert seen == []


async def test_root_path_is_stripped_before_matching() -> None:
    seen: Seen = []
    router = URLRouter([path("ws/<int:n>/", endpoint("e", seen))])
    scope: Scope = {
        "type": "websocket",
        "path": "/prefix/ws/3/",
        "root_path": "/prefix",
    }
    await router(scope, never_receive, never_send)
    assert seen[0][1]["url_route"]["kwargs"] == {"n": 3}
    assert seen[0][1]["path"] == "/prefix/ws/3/"


async def test_path_outside_root_path_finds_no_route() -> None:
    router = URLRouter([path("ws/", endpoint("e", []))])
    with pytest.raises(ValueError, match="No route found for path '/ws/'"):
        await router(
            {"type": "websocket", "path": "/ws/", "root_path": "/prefix"},
            never_receive,
            never_send,
        )


async def test_scope_without_path_is_a_clear_value_error() -> None:
    router = URLRouter([path("ws/", endpoint("e", []))])
    with pytest.raises(ValueError, match="No 'path' key in connection scope"):
        await router({"type": "channel", "channel": "x"}, never_receive, never_send)


async def test_url_route_already_in_scope_is_merged_as_outer_level() -> None:
    seen: Seen = []
    router = URLRouter([re_path(r"^(\d+)/$", endpoint("e", seen))])
    scope: Scope = {
        "type": "websocket",
        "path": "/9/",
        "url_route": {"args": ("a",), "kwargs": {"k": 1}},
    }
    await router(scope, never_receive, never_send)
    assert seen[0][1]["url_route"] == {"args": ("a", "9"), "kwargs": {"k": 1}}


async def test_router_returns_what_the_application_returns_and_passes_channels() -> (
    None
):
    received: list[Message] = []

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        await send(await receive())

    async def receive() -> Message:
        return {"type": "ping"}

    async def send(message: Message) -> None:
        received.append(message)

    router = URLRouter([path("e/", echo)])
    await router({"type": "websocket", "path": "/e/"}, receive, send)
    assert received == [{"type": "ping"}]


# --- URLRouter with Django's path / re_path / include -------------------------


def django_routes() -> tuple[Any, Any, Any]:
    """Django's path, re_path and include, untyped: django-stubs types views
    as HTTP views returning HttpResponse, which ASGI applications are not."""
    from django.urls import include, path, re_path

    return path, re_path, include


async def test_django_path_and_re_path_routes_with_kwargs() -> None:
    django_path, django_re_path, _ = django_routes()
    seen: Seen = []
    router = URLRouter(
        [
            django_path("d/<int:n>/", endpoint("path", seen), kwargs={"x": "y"}),
            django_re_path(r"^r/(?P<slug>[-\w]+)/$", endpoint("re", seen)),
        ]
    )
    await router({"type": "websocket", "path": "/d/7/"}, never_receive, never_send)
    await router({"type": "websocket", "path": "/r/a-b/"}, never_receive, never_send)
    assert [(n, s["url_route"]) for n, s in seen] == [
        ("path", {"args": (), "kwargs": {"n": 7, "x": "y"}}),
        ("re", {"args": (), "kwargs": {"slug": "a-b"}}),
    ]


async def test_django_nested_routes_without_mutating_patterns() -> None:
    django_path, django_re_path, _ = django_routes()
    seen: Seen = []
    inner = URLRouter([django_path("u/<str:name>/", endpoint("nested", seen))])
    outer_path = django_path("p/<int:n>/", inner)
    outer_re = django_re_path(r"^q/(?P<n>\d+)/", inner)
    patterns_before = (outer_path.pattern, outer_re.pattern)
    router = URLRouter([outer_path, outer_re])
    assert (outer_path.pattern, outer_re.pattern) == patterns_before
    for path_ in ("/p/1/u/a/", "/q/2/u/b/"):
        await router({"type": "websocket", "path": path_}, never_receive, never_send)
    assert [(n, s["url_route"]["kwargs"]) for n, s in seen] == [
        ("nested", {"n": 1, "name": "a"}),
        ("nested", {"n": "2", "name": "b"}),
    ]


def test_django_include_is_refused_as_in_channels() -> None:
    from django.core.exceptions import ImproperlyConfigured

    django_path, _, include = django_routes()
    included = django_path("inc/", include([django_path("z/", endpoint("inc", []))]))
    with pytest.raises(ImproperlyConfigured) as raised:
        URLRouter([included])
    message = str(raised.value)
    assert message.startswith(str(included) + ": ")
    assert message.endswith(
        "include() is not supported in URLRouter. Use nested URLRouter "
        "instances instead."
    )


# --- ProtocolTypeRouter -------------------------------------------------------


async def test_protocol_type_router_dispatches_on_scope_type() -> None:
    seen: Seen = []
    router = ProtocolTypeRouter(
        {"http": endpoint("http", seen), "websocket": endpoint("ws", seen)}
    )
    await router({"type": "websocket", "path": "/"}, never_receive, never_send)
    await router({"type": "http", "path": "/"}, never_receive, never_send)
    assert [n for n, _ in seen] == ["ws", "http"]


async def test_protocol_type_router_unknown_type_names_it_and_the_known_ones() -> None:
    router = ProtocolTypeRouter(
        {"http": endpoint("http", []), "websocket": endpoint("ws", [])}
    )
    with pytest.raises(
        ValueError, match=r"scope type 'webtransport'.*'http', 'websocket'"
    ):
        await router({"type": "webtransport"}, never_receive, never_send)


async def run_lifespan(app: ASGIApp, incoming: list[Message]) -> list[Message]:
    queue = list(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


async def test_protocol_type_router_answers_lifespan_startup_and_shutdown() -> None:
    router = ProtocolTypeRouter({"websocket": endpoint("ws", [])})
    sent = await run_lifespan(
        router, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


class ClosingLayer(InMemoryChannelLayer):
    """A user-defined backend that remembers being closed."""

    closed: ClassVar[list[ClosingLayer]] = []

    async def close(self) -> None:
        ClosingLayer.closed.append(self)
        await super().close()


@pytest.fixture
def closing_layer() -> Iterator[None]:
    channel_layers.configure({"default": {"BACKEND": f"{__name__}.ClosingLayer"}})
    ClosingLayer.closed.clear()
    yield
    channel_layers.configure(None)


@pytest.mark.usefixtures("closing_layer")
async def test_lifespan_shutdown_closes_the_channel_layers_built() -> None:
    layer = channel_layers["default"]
    await layer.send("c", {"type": "m"})
    router = ProtocolTypeRouter({"websocket": endpoint("ws", [])})
    sent = await run_lifespan(
        router, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert ClosingLayer.closed == [layer]
    # Forgotten: the next lookup builds a fresh layer.
    assert channel_layers["default"] is not layer


async def test_protocol_type_router_uses_a_given_lifespan_application() -> None:
    seen: Seen = []
    router = ProtocolTypeRouter({"lifespan": endpoint("mine", seen)})
    assert await run_lifespan(router, []) == []
    assert [n for n, _ in seen] == ["mine"]


# --- ChannelNameRouter --------------------------------------------------------


async def test_channel_name_router_dispatches_on_channel() -> None:
    seen: Seen = []
    router = ChannelNameRouter(
        {"thumbs": endpoint("thumbs", seen), "mail": endpoint("mail", seen)}
    )
    await router({"type": "channel", "channel": "mail"}, never_receive, never_send)
    assert [n for n, _ in seen] == ["mail"]


async def test_channel_name_router_errors_like_channels() -> None:
    router = ChannelNameRouter({"thumbs": endpoint("thumbs", [])})
    with pytest.raises(ValueError, match="without a 'channel' key"):
        await router({"type": "channel"}, never_receive, never_send)
    with pytest.raises(
        ValueError, match="No application configured for channel name 'x'"
    ):
        await router({"type": "channel", "channel": "x"}, never_receive, never_send)


# --- get_default_application (needs configured Django: run in a subprocess) ---

GET_DEFAULT = """
import json, sys, types
from django.conf import settings
settings.configure(**SETTINGS)
from django.core.exceptions import ImproperlyConfigured
from achannels.routing import get_default_application
module = types.ModuleType("fake_asgi")
module.application = "the app"
sys.modules["fake_asgi"] = module
try:
    result = {"value": get_default_application()}
except ImproperlyConfigured as exc:
    result = {"error": str(exc), "cause": repr(exc.__cause__)}
print(json.dumps(result))
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ASGI_APPLICATION": "fake_asgi.application"}, {"value": "the app"}),
        ({}, {"error": "Cannot find ASGI_APPLICATION setting"}),
        (
            {"ASGI_APPLICATION": "no_such_module_xyz.application"},
            {"error": "Cannot import ASGI_APPLICATION module 'no_such_module_xyz'"},
        ),
        (
            {"ASGI_APPLICATION": "fake_asgi.missing"},
            {"error": "Cannot find 'missing' in ASGI_APPLICATION module fake_asgi"},
        ),
    ],
)
def test_get_default_application(
    settings: dict[str, str], expected: dict[str, str]
) -> None:
    code = "SETTINGS = " + repr(settings) + "\n" + textwrap.dedent(GET_DEFAULT)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    if "value" in expected:
        assert got == expected
    else:
        assert got["error"].startswith(expected["error"]), got
    if "no_such_module" in str(settings):
        assert "ModuleNotFoundError" in got["cause"]


# --- Differential and property tests ----------------------------------------


def run_to_end(app: ASGIApp, scope: Scope) -> None:
    """Run an app whose endpoints never await, without an event loop."""
    coroutine = app(scope, never_receive, never_send)
    try:
        coroutine.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    raise AssertionError("the application awaited something")


ROUTES = [
    "a/<int:n>/",
    "a/<str:s>/b/",
    "<slug:s>/",
    "p/<path:rest>",
    "u/<uuid:u>",
    "x/",
]
PATH_CHARS = st.sampled_from([*"ab01/-_.xpu", "6f1c1e6a-2b7a-4f2e-9d3c-1a2b3c4d5e6f"])
PATHS = st.lists(PATH_CHARS, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(route_=st.sampled_from(ROUTES), path_=PATHS, endpoint_=st.booleans())
def test_path_matches_exactly_like_django(
    route_: str, path_: str, endpoint_: bool
) -> None:
    from django.urls.resolvers import RoutePattern as DjangoRoutePattern

    from achannels._paths import RoutePattern

    ours = RoutePattern(route_, is_endpoint=endpoint_).match(path_)
    theirs = DjangoRoutePattern(route_, is_endpoint=endpoint_).match(path_)
    assert ours == theirs


REGEXES = [
    r"^ab?c/",
    r"^a\.b/(?P<x>\w+)/$",
    r"^ws\/chat\/(?P<room>[^/]+)/$",
    r"^x{2}y",
    r"^a+b",
    r"^(?i:a)bc",
    r"^ab|cd",
    r"^a*c",
    r"^[ab]c",
    r"^a.c",
    r"^\d+/",
    r"^a\-b c",
    r"chat/(\w+)/$",
    r"^ab(c)?$",
]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), regex=st.sampled_from(REGEXES))
def test_router_routes_every_path_its_regex_matches(
    data: st.DataObject, regex: str
) -> None:
    # Generated paths are biased towards matches; the router must agree with
    # the pattern itself (its precomputed literal prefix must never reject).
    from django.urls.resolvers import RegexPattern as DjangoRegexPattern

    path_ = data.draw(st.one_of(st.from_regex(regex), st.text(max_size=6)))
    path_ = path_.lstrip("/")
    expected = DjangoRegexPattern(regex, is_endpoint=True).match(path_) is not None
    seen: Seen = []
    router = URLRouter([re_path(regex, endpoint("e", seen))])
    try:
        run_to_end(router, {"type": "websocket", "path": path_})
    except ValueError as exc:
        assert "No route found" in str(exc)
    assert bool(seen) == expected


TRANSLATED_ROUTE = """
import asyncio, json
import django
from django.conf import settings
settings.configure(USE_I18N=True, LANGUAGE_CODE="en")
django.setup()
from django.urls import path
from django.utils import translation
from django.utils.functional import lazy
from achannels.routing import URLRouter

WORDS = {"en": "chat/", "fr": "discussion/"}
route = lazy(lambda: WORDS[translation.get_language()[:2]], str)()
seen = []

async def app(scope, receive, send):
    seen.append(scope["path"])

async def main():
    router = URLRouter([path(route, app)])
    await router({"type": "websocket", "path": "/chat/"}, None, None)
    with translation.override("fr"):
        await router({"type": "websocket", "path": "/discussion/"}, None, None)

asyncio.run(main())
print(json.dumps(seen))
"""


def test_lazily_translated_django_route_matches_in_the_active_language() -> None:
    assert run_python(TRANSLATED_ROUTE) == ["/chat/", "/discussion/"]


class ForeignPattern:
    """A pattern object from neither achannels nor Django."""

    def match(self, path_: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        return (path_, (), {}) if path_.startswith("f/") else None


class ForeignRoute:
    def __init__(self, callback: ASGIApp) -> None:
        self.pattern = ForeignPattern()
        self.callback = callback


def test_unknown_pattern_type_in_front_of_nested_router_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Unsupported pattern type ForeignPattern"):
        URLRouter([ForeignRoute(URLRouter([]))])


async def test_unknown_pattern_type_in_front_of_an_endpoint_is_used_as_is() -> None:
    seen: Seen = []
    router = URLRouter([ForeignRoute(endpoint("f", seen))])
    await router({"type": "websocket", "path": "/f/x"}, never_receive, never_send)
    assert seen[0][1]["path_remaining"] == "f/x"


# --- as_asgi() applications under the routers --------------------------------


class RecordsItsRoute(AsyncConsumer):
    """Records the route it got on connect, then stops."""

    routes: ClassVar[list[Any]] = []

    async def websocket_connect(self, message: Message) -> None:
        self.routes.append(self.scope.get("url_route"))
        raise StopConsumer


def logged(app: ASGIApp, log: list[str]) -> ASGIApp:
    """A user's wrapper in the usual style: functools.wraps copies the
    wrapped app's attributes (``consumer_class``, ...) onto it."""

    @functools.wraps(app)
    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        log.append("before")
        await app(scope, receive, send)
        log.append("after")

    return wrapper


async def connect_only() -> Message:
    return {"type": "websocket.connect"}


async def test_routers_run_as_asgi_consumers_and_wrappers_around_them() -> None:
    RecordsItsRoute.routes.clear()
    log: list[str] = []
    consumer = RecordsItsRoute.as_asgi()
    wrapped = logged(consumer, log)
    assert wrapped.consumer_class is RecordsItsRoute  # type: ignore[attr-defined]
    router = URLRouter(
        [path("plain/<int:n>/", consumer), path("wrapped/<int:n>/", wrapped)]
    )
    for app in (router, ProtocolTypeRouter({"websocket": router})):
        for route in ("/plain/1/", "/wrapped/2/"):
            scope: Scope = {"type": "websocket", "path": route}
            await app(scope, connect_only, never_send)
    direct: ASGIApp = ProtocolTypeRouter({"websocket": wrapped})
    await direct({"type": "websocket", "path": "/"}, connect_only, never_send)
    assert [r["kwargs"] for r in RecordsItsRoute.routes[:4]] == [
        {"n": 1},
        {"n": 2},
        {"n": 1},
        {"n": 2},
    ]
    assert len(RecordsItsRoute.routes) == 5
    # The wrapper ran each time it was routed to, around its consumer.
    assert log == ["before", "after"] * 3
