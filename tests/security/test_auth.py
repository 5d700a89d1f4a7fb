"""``scope["user"]`` comes from the server-side session and nothing else.

Two servers run the same Django app (``tests/apps/security_app.py``) on one
database with different ``SECRET_KEY``s, once with signed-cookie sessions
(the cookie carries the data) and once with database sessions (the cookie
carries a key). A session cookie each server issues authenticates on that
server; nothing else does: not the other server's cookie, not a tampered one,
not headers, cookies or query strings a client makes up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.support.reliability import TIMEOUT
from tests.support.servers import REPO_ROOT, RunningServer, serve

APP = "tests.apps.security_app:application"
ENGINES = {
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
    "db": "django.contrib.sessions.backends.db",
}


class Site:
    """Two servers of the app with different secrets, one database."""

    def __init__(self, ours: RunningServer, theirs: RunningServer) -> None:
        self.ours = ours
        self.theirs = theirs


def app_env(secret: str, database: Path, engine: str) -> dict[str, str]:
    return {
        "SECURITY_SECRET_KEY": secret,
        "SECURITY_DB": str(database),
        "SECURITY_SESSION_ENGINE": ENGINES[engine],
    }


@pytest.fixture(params=sorted(ENGINES))
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    database = tmp_path / "security.sqlite3"
    ours = app_env("our-secret-" + "x" * 40, database, request.param)
    theirs = app_env("their-secret-" + "y" * 40, database, request.param)
    subprocess.run(
        [sys.executable, "-m", "tests.apps.security_app"],
        cwd=REPO_ROOT,
        env={**os.environ, **ours},
        check=True,
        timeout=60,
    )
    with (
        serve(APP, "uvicorn-wsproto", env=ours) as our_server,
        serve(APP, "uvicorn-wsproto", env=theirs) as their_server,
    ):
        yield Site(our_server, their_server)


def _login(server: RunningServer) -> str:
    with urllib.request.urlopen(f"{server.url}/login/", timeout=TIMEOUT) as response:
        assert response.status == 200
        cookie: str = response.headers["Set-Cookie"]
    name_value = cookie.split(";", 1)[0]
    assert name_value.startswith("sessionid="), cookie
    return name_value


async def login(server: RunningServer) -> str:
    """Log ``alice`` in on ``server``; return ``"sessionid=..."``."""
    cookie: str = await asyncio.to_thread(_login, server)
    return cookie


async def whoami(
    server: RunningServer, headers: list[tuple[str, str]], query: str = ""
) -> dict[str, Any]:
    url = f"{server.ws_url}/ws/whoami/{query}"
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return answer


ANONYMOUS = {"username": None, "authenticated": False}
ALICE = {"username": "alice", "authenticated": True}


async def test_own_session_cookie_authenticates(site: Site) -> None:
    cookie = await login(site.ours)
    assert await whoami(site.ours, [("Cookie", cookie)]) == ALICE


async def test_session_cookie_from_another_secret_is_rejected(site: Site) -> None:
    foreign = await login(site.theirs)
    # It is a working cookie where it came from...
    assert await whoami(site.theirs, [("Cookie", foreign)]) == ALICE
    # ...and nobody here.
    assert await whoami(site.ours, [("Cookie", foreign)]) == ANONYMOUS
    # Our own cookies still work afterwards.
    assert await whoami(site.ours, [("Cookie", await login(site.ours))]) == ALICE


def _tampered(cookie: str) -> list[str]:
    name, value = cookie.split("=", 1)
    flipped = [
        value[:-1] + ("A" if value[-1] != "A" else "B"),  # signature / key end
        ("A" if value[0] != "A" else "B") + value[1:],  # data / key start
        value[: len(value) // 2],  # cut short
        value + value,  # doubled
    ]
    return [f"{name}={candidate}" for candidate in flipped]


async def test_tampered_session_cookie_is_rejected(site: Site) -> None:
    cookie = await login(site.ours)
    for tampered in _tampered(cookie):
        assert await whoami(site.ours, [("Cookie", tampered)]) == ANONYMOUS, tampered


def _unsigned_session() -> str:
    # What a signed-cookie session looks like without its signature: the
    # user id and backend an attacker would like the server to believe.
    data = json.dumps(
        {
            "_auth_user_id": "1",
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": "0" * 64,
        }
    ).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_client_supplied_identity_never_reaches_scope_user(site: Site) -> None:
    basic = base64.b64encode(b"alice:wonderland").decode()
    attempts: list[tuple[list[tuple[str, str]], str]] = [
        ([("User", "alice")], ""),
        ([("X-User", "alice"), ("Remote-User", "alice")], ""),
        ([("X-Forwarded-User", "alice"), ("X-Remote-User", "alice")], ""),
        ([("Authorization", f"Basic {basic}")], ""),
        ([("Cookie", "user=alice; scope=user; username=alice")], ""),
        (
            [("Cookie", "_auth_user_id=1; _auth_user_backend=x; sessionid=")],
            "",
        ),
        ([("Cookie", f"sessionid={_unsigned_session()}")], ""),
        ([("Cookie", f"sessionid={_unsigned_session()}:1tAmper:sig")], ""),
        ([], "?user=alice&_auth_user_id=1"),
    ]
    for headers, query in attempts:
        assert await whoami(site.ours, headers, query) == ANONYMOUS, (headers, query)
    # The server was never confused: a real login still works.
    assert await whoami(site.ours, [("Cookie", await login(site.ours))]) == ALICE
