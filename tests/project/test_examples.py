"""The examples and the documented server recipes, run for real.

Each test starts an example the way ``docs/deployment.md`` and the README tell
users to (uvicorn, uvicorn with workers, gunicorn with uvicorn workers,
hypercorn, granian, behind a prefix-stripping reverse proxy), on a loopback port, and
talks to it with real HTTP and WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

import redis
from tests.support.servers import REPO_ROOT, RunningServer, free_port, serve

TIMEOUT = 15.0
CHAT_DIR = REPO_ROOT / "examples" / "chat"
CHAT_APP = "chat_project.asgi:application"


# --------------------------------------------------------------- helpers


def redis_url_or_skip() -> str:
    """The test Redis URL; skip (fail under CI=true) when nothing answers."""
    url = os.environ.get("ACHANNELS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is required under CI=true: {exc}")
        pytest.skip(f"needs a Redis server at {url} (ACHANNELS_TEST_REDIS_URL): {exc}")
    return url


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """A Redis URL and a key prefix no other test uses; keys removed after."""
    url = redis_url_or_skip()
    prefix = f"test-examples-{uuid.uuid4().hex[:12]}"
    yield url, prefix
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


def chat_env(**extra: str) -> dict[str, str]:
    # REDIS_URL from the developer's shell must not switch the in-memory tests.
    return {"REDIS_URL": "", "DJANGO_DEBUG": "0", **extra}


@contextlib.asynccontextmanager
async def chat_client(
    server_url: str, ws_url: str, room: str, name: str
) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A chat member: the open socket and the server's welcome frame."""
    url = f"{ws_url}/ws/chat/{room}/?name={name}"
    async with connect(
        url, origin=Origin(server_url), open_timeout=TIMEOUT, close_timeout=5
    ) as ws:
        welcome = await next_frame(ws, "welcome")
        yield ws, welcome


async def next_frame(ws: ClientConnection, kind: str, **match: Any) -> dict[str, Any]:
    """Read frames until one of type ``kind`` with the ``match`` items arrives."""

    async def read() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind and all(
                frame.get(k) == v for k, v in match.items()
            ):
                return dict(frame)

    return await asyncio.wait_for(read(), TIMEOUT)


async def two_members_talk(server_url: str, ws_url: str, room: str) -> None:
    """Ada and Bob join ``room``; each sees the other; Bob's message reaches Ada."""
    async with (
        chat_client(server_url, ws_url, room, "Ada") as (ada, _),
        chat_client(server_url, ws_url, room, "Bob") as (bob, welcome),
    ):
        assert welcome["members"] == ["Ada", "Bob"]
        await next_frame(ada, "presence", event="join", name="Bob")
        await bob.send(json.dumps({"type": "message", "text": "hello Ada"}))
        got = await next_frame(ada, "message")
        assert (got["message"]["name"], got["message"]["text"]) == ("Bob", "hello Ada")


async def http_get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await client.get(url, headers=headers)


# ------------------------------------------------------ chat on uvicorn


@pytest.fixture(scope="module")
def chat_server() -> Iterator[RunningServer]:
    with serve(CHAT_APP, cwd=CHAT_DIR, env=chat_env()) as server:
        yield server


async def test_chat_pages_and_static_files_served_by_django(
    chat_server: RunningServer,
) -> None:
    lobby = await http_get(f"{chat_server.url}/")
    assert lobby.status_code == 200
    assert 'data-page="lobby"' in lobby.text
    assert '<link rel="stylesheet" href="/static/chat/chat.css">' in lobby.text
    room = await http_get(f"{chat_server.url}/room/general/")
    assert room.status_code == 200
    assert 'data-room="general"' in room.text
    script = await http_get(f"{chat_server.url}/static/chat/chat.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(
        ("text/javascript", "application/javascript")
    )
    assert "new WebSocket(" in script.text
    css = await http_get(f"{chat_server.url}/static/chat/chat.css")
    assert css.headers["content-type"].startswith("text/css")
    missing = await http_get(f"{chat_server.url}/static/chat/nope.js")
    assert missing.status_code == 404


async def test_chat_members_see_each_other_messages_and_typing(
    chat_server: RunningServer,
) -> None:
    url, ws_url = chat_server.url, chat_server.ws_url
    async with chat_client(url, ws_url, "talk", "Ada") as (ada, welcome):
        assert welcome["members"] == ["Ada"]
        assert welcome["history"] == []
        async with chat_client(url, ws_url, "talk", "Bob") as (bob, welcome):
            assert welcome["members"] == ["Ada", "Bob"]
            joined = await next_frame(ada, "presence", event="join", name="Bob")
            assert joined["members"] == ["Ada", "Bob"]
            assert joined["announce"] is True

            await bob.send(json.dumps({"type": "typing", "typing": True}))
            typing = await next_frame(ada, "typing")
            assert typing == {"type": "typing", "name": "Bob", "typing": True}

            await bob.send(json.dumps({"type": "message", "text": "  hi Ada  "}))
            for ws in (ada, bob):
                message = (await next_frame(ws, "message"))["message"]
                assert (message["name"], message["text"]) == ("Bob", "hi Ada")
            rooms = (await http_get(f"{url}/api/rooms/")).json()["rooms"]
            assert {"name": "talk", "people": 2} in rooms
        left = await next_frame(ada, "presence", event="leave", name="Bob")
        assert left["members"] == ["Ada"]


async def test_chat_history_keeps_last_messages_for_late_joiner(
    chat_server: RunningServer,
) -> None:
    url, ws_url = chat_server.url, chat_server.ws_url
    async with chat_client(url, ws_url, "history", "Ada") as (ada, _):
        for n in range(55):
            await ada.send(json.dumps({"type": "message", "text": f"m{n}"}))
        # The 55th echo means every message is stored.
        while (await next_frame(ada, "message"))["message"]["text"] != "m54":
            pass
    async with chat_client(url, ws_url, "history", "Cy") as (_, welcome):
        texts = [m["text"] for m in welcome["history"]]
    assert texts == [f"m{n}" for n in range(5, 55)]  # CHAT_HISTORY_SIZE = 50


async def test_chat_refuses_foreign_origin_with_403(chat_server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{chat_server.ws_url}/ws/chat/general/?name=Eve",
            origin=Origin("http://evil.example"),
            open_timeout=TIMEOUT,
        ):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("room", "query", "code"),
    [
        ("general", "", 4001),
        ("general", "name=%20%0A", 4001),
        ("bad.room", "name=Ada", 4002),
    ],
)
async def test_chat_explains_refusal_then_closes_with_app_code(
    chat_server: RunningServer, room: str, query: str, code: int
) -> None:
    async with connect(
        f"{chat_server.ws_url}/ws/chat/{room}/?{query}",
        origin=Origin(chat_server.url),
        open_timeout=TIMEOUT,
    ) as ws:
        error = await next_frame(ws, "error")
        assert error["reason"]
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == code


@pytest.mark.parametrize(
    ("frame", "code"), [("not json", 1007), ("x" * 20_000, 1009), (b"\x00", 1007)]
)
async def test_chat_bad_frame_closes_socket_and_member_leaves(
    chat_server: RunningServer, frame: str | bytes, code: int
) -> None:
    url, ws_url = chat_server.url, chat_server.ws_url
    async with (
        chat_client(url, ws_url, f"bad{code}", "Ada") as (ada, _),
        chat_client(url, ws_url, f"bad{code}", "Mallory") as (mallory, _),
    ):
        await mallory.send(frame)
        await asyncio.wait_for(mallory.wait_closed(), TIMEOUT)
        assert mallory.close_code == code
        left = await next_frame(ada, "presence", event="leave", name="Mallory")
        assert left["members"] == ["Ada"]
        # The room goes on.
        await ada.send(json.dumps({"type": "message", "text": "still here"}))
        assert (await next_frame(ada, "message"))["message"]["text"] == "still here"


# ------------------------------------------------------- server recipes


def recipe_command(recipe: str, port: int) -> list[str]:
    """The documented command lines (docs/deployment.md), with this venv."""
    bind = f"127.0.0.1:{port}"
    py = sys.executable
    return {
        "uvicorn": [
            py, "-m", "uvicorn", CHAT_APP, "--host", "127.0.0.1", "--port", str(port),
        ],
        "uvicorn-workers": [
            py, "-m", "uvicorn", CHAT_APP, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2",
        ],
        "gunicorn-uvicorn-worker": [
            py, "-m", "gunicorn", CHAT_APP, "-k", "uvicorn_worker.UvicornWorker",
            "--bind", bind, "--workers", "1", "--graceful-timeout", "5",
        ],
        "gunicorn-uvicorn.workers": [
            py, "-m", "gunicorn", CHAT_APP, "-k", "uvicorn.workers.UvicornWorker",
            "--bind", bind, "--workers", "1", "--graceful-timeout", "5",
        ],
        "hypercorn": [py, "-m", "hypercorn", CHAT_APP, "--bind", bind],
        "granian": [
            py, "-m", "granian", "--interface", "asgi", CHAT_APP,
            "--host", "127.0.0.1", "--port", str(port),
        ],
    }[recipe]  # fmt: skip


@pytest.mark.parametrize(
    "recipe",
    [
        "uvicorn",
        "gunicorn-uvicorn-worker",
        "gunicorn-uvicorn.workers",
        "hypercorn",
        "granian",
    ],
)
async def test_server_recipe_serves_chat_page_and_websockets(recipe: str) -> None:
    # One process each, so the in-memory layer is enough; several workers
    # (Redis) have their own test below.
    port = free_port()
    env = chat_env()
    with serve(
        CHAT_APP, cwd=CHAT_DIR, env=env, command=recipe_command(recipe, port), port=port
    ) as server:
        page = await http_get(f"{server.url}/room/recipes/")
        assert page.status_code == 200, server.output()
        await two_members_talk(server.url, server.ws_url, "recipes")


async def test_cluster_workers_share_rooms_history_and_presence_through_redis(
    redis_prefix: tuple[str, str],
) -> None:
    redis_url, prefix = redis_prefix
    port = free_port()
    env = chat_env(REDIS_URL=redis_url, CHAT_REDIS_PREFIX=prefix)
    with serve(
        CHAT_APP,
        cwd=CHAT_DIR,
        env=env,
        command=recipe_command("uvicorn-workers", port),
        port=port,
    ) as server:
        url, ws_url = server.url, server.ws_url
        async with contextlib.AsyncExitStack() as stack:
            # The kernel hands each connection to either worker; connect until
            # both have one member of the room.
            by_worker: dict[int, tuple[ClientConnection, str]] = {}
            for n in range(60):
                if len(by_worker) == 2:
                    break
                name = f"m{n}"
                ws, welcome = await stack.enter_async_context(
                    chat_client(url, ws_url, "cluster", name)
                )
                by_worker.setdefault(welcome["worker"], (ws, name))
            assert len(by_worker) == 2, "every connection went to one worker"
            (first, first_name), (second, _) = by_worker.values()
            assert first_name in welcome["members"]  # presence across workers
            await first.send(json.dumps({"type": "message", "text": "across"}))
            got = await next_frame(second, "message")
            assert (got["message"]["name"], got["message"]["text"]) == (
                first_name,
                "across",
            )
        async with chat_client(url, ws_url, "cluster", "late") as (late, welcome):
            assert [m["text"] for m in welcome["history"]] == ["across"]
            # Everyone else left; their workers may still be telling Redis.
            if welcome["members"] != ["late"]:
                await next_frame(late, "presence", event="leave", members=["late"])


# ------------------------------------------------------- reverse proxy


@contextlib.asynccontextmanager
async def prefix_stripping_proxy(
    prefix: str, upstream_port: int, forwarded_for: str
) -> AsyncIterator[int]:
    """A reverse proxy like nginx's ``location /prefix/ { proxy_pass
    http://app/; }``: strips ``prefix`` from the request target, adds
    ``X-Forwarded-For``/``X-Forwarded-Proto``, then relays bytes both ways.
    Yields its port."""
    open_writers: set[asyncio.StreamWriter] = set()
    all_closed = asyncio.Event()
    all_closed.set()

    async def relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        if sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        open_writers.add(writer)
        all_closed.clear()
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, _, headers = head.partition(b"\r\n")
            method, target, version = request_line.split(b" ", 2)
            if not target.startswith(prefix.encode() + b"/"):
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                return
            up_reader, upstream = await asyncio.open_connection(
                "127.0.0.1", upstream_port
            )
            open_writers.add(upstream)
            upstream.write(
                b"%s %s %s\r\nx-forwarded-for: %s\r\nx-forwarded-proto: https\r\n%s"
                % (
                    method,
                    target[len(prefix) :],
                    version,
                    forwarded_for.encode(),
                    headers,
                )
            )
            await asyncio.gather(relay(reader, upstream), relay(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
                    open_writers.discard(w)
            if not open_writers:
                all_closed.set()

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield proxy.sockets[0].getsockname()[1]
    finally:
        proxy.close()
        for w in list(open_writers):
            w.close()
        await asyncio.wait_for(all_closed.wait(), TIMEOUT)
        await proxy.wait_closed()


async def test_reverse_proxy_recipe_root_path_and_proxy_headers() -> None:
    port = free_port()
    command = [
        *recipe_command("uvicorn", port),
        "--root-path", "/chat", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
    ]  # fmt: skip
    with serve(
        CHAT_APP, cwd=CHAT_DIR, env=chat_env(), command=command, port=port
    ) as server:
        async with prefix_stripping_proxy("/chat", port, "203.0.113.7") as proxy_port:
            public = f"http://127.0.0.1:{proxy_port}/chat"
            page = await http_get(f"{public}/room/lobby/", connection="close")
            assert page.status_code == 200, server.output()
            # Links, static files and the WebSocket base all carry the prefix.
            assert 'data-base="/chat/"' in page.text
            assert 'href="/chat/static/chat/chat.css"' in page.text
            css = await http_get(f"{public}/static/chat/chat.css", connection="close")
            assert css.status_code == 200
            ws_public = f"ws://127.0.0.1:{proxy_port}/chat"
            async with chat_client(
                f"https://127.0.0.1:{proxy_port}", ws_public, "lobby", "Ada"
            ) as (ada, welcome):
                assert welcome["members"] == ["Ada"]
                await ada.send(json.dumps({"type": "message", "text": "via proxy"}))
                assert (await next_frame(ada, "message"))["message"][
                    "text"
                ] == "via proxy"
            # --proxy-headers: the consumer saw the client's address, not the proxy's.
            await asyncio.to_thread(
                server.wait_for_output, "Ada joined lobby from 203.0.113.7"
            )


# ------------------------------------------------------ beyond Django


def hide_django(tmp_path: Path, *path: Path) -> dict[str, str]:
    """Environment in which ``import django`` fails as if it were not
    installed; ``path`` is the rest of ``PYTHONPATH``."""
    shadow = tmp_path / "no_django" / "django"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ImportError("Django is not installed (hidden by the test)")\n'
    )
    return {"PYTHONPATH": os.pathsep.join(map(str, (shadow.parent, *path)))}


async def test_plain_asgi_example_runs_without_django(
    server_kind: str, tmp_path: Path
) -> None:
    example = REPO_ROOT / "examples" / "plain_asgi"
    env = hide_django(tmp_path, REPO_ROOT, example)
    with serve("app:application", server_kind, cwd=example, env=env) as server:
        room = f"{server.ws_url}/ws/rooms/lobby/"
        async with (
            connect(room, open_timeout=TIMEOUT) as alice,
            connect(room, open_timeout=TIMEOUT) as bob,
        ):
            hello = json.loads(await asyncio.wait_for(alice.recv(), TIMEOUT))
            await asyncio.wait_for(bob.recv(), TIMEOUT)
            await alice.send(json.dumps({"text": "hi all"}))
            for ws in (alice, bob):
                said = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                assert said == {"type": "say", "from": hello["you"], "text": "hi all"}
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                sent = await client.post(
                    f"{server.url}/rooms/lobby/announce", content=b"from http"
                )
                assert sent.status_code == 202
                info = (await client.get(f"{server.url}/rooms/lobby/")).json()
            assert hello["you"] in info["members"]
            for ws in (alice, bob):
                said = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                assert said["text"] == "from http"
        async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as echo:
            await echo.send(b"\x00bytes")
            assert await asyncio.wait_for(echo.recv(), TIMEOUT) == b"\x00bytes"
        assert "Traceback" not in server.output()


async def test_starlette_example_mounts_consumers_next_to_its_routes(
    server_kind: str,
) -> None:
    example = REPO_ROOT / "examples" / "starlette"
    with serve("app:app", server_kind, cwd=example) as server:
        health = await http_get(f"{server.url}/health")
        assert health.json() == {"status": "ok"}
        async with connect(
            f"{server.ws_url}/ws/rooms/blue/", open_timeout=TIMEOUT
        ) as ws:
            await ws.send(json.dumps({"from": "ws"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {
                "from": "ws"
            }
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                sent = await client.post(
                    f"{server.url}/rooms/blue/notify", json={"from": "http"}
                )
            assert sent.status_code == 202
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {
                "from": "http"
            }


# ------------------------------------------------------ fresh clone


def test_readme_quick_start_works_on_a_fresh_clone(tmp_path: Path) -> None:
    """The committed tree alone serves the demo: migrations, templates and
    static files are all in git and no database file is."""
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "examples/chat"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert not [f for f in tracked if re.search(r"\.sqlite3$|__pycache__", f)]
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{REPO_ROOT}", str(clone)],
        check=True, timeout=60,
    )  # fmt: skip
    chat = clone / "examples" / "chat"
    env = {**os.environ, **chat_env(), "PYTHONPATH": str(chat)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=chat, env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert (chat / "db.sqlite3").exists()
    with serve(CHAT_APP, cwd=chat, env=chat_env()) as server:
        page = httpx.get(f"{server.url}/", timeout=TIMEOUT)
        assert page.status_code == 200
        for asset in ("chat.css", "chat.js"):
            got = httpx.get(f"{server.url}/static/chat/{asset}", timeout=TIMEOUT)
            assert got.status_code == 200, asset
        asyncio.run(two_members_talk(server.url, server.ws_url, "fresh"))
