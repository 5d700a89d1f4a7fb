"""The sync publisher from where sync code lives: a WSGI view under a
threaded server, a Django view under an ASGI server (in-memory layer, same
process), a management command, a signal receiver, and 8 threads at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import websockets

from achannels.layers import InMemoryChannelLayer, Publisher
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.presence import deadline
from tests.support.redis import private_redis, require_redis, unique_prefix
from tests.support.servers import RunningServer, free_port, serve

SITE = Path(__file__).resolve().parent / "site"
ASGI = "pubsite.asgi:application"


def site_env(kind: str) -> dict[str, str]:
    env = {"PUB_LAYER": kind, "DJANGO_SETTINGS_MODULE": "pubsite.settings"}
    if kind != "memory":
        env.update(PUB_REDIS_URL=require_redis(), PUB_PREFIX=unique_prefix())
    return env


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=20) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


async def listen(server: RunningServer, group: str) -> Any:
    ws = await websockets.connect(
        f"{server.ws_url}/ws/listen/{group}/", open_timeout=10
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "ready"}
    return ws


async def received(ws: Any, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    frames = []
    async with deadline(timeout):
        while len(frames) < count:
            frames.append(json.loads(await ws.recv()))
    return frames


async def publish_concurrently(url: str, requests: int) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(*(asyncio.to_thread(get, url) for _ in range(requests)))
    )


@pytest.fixture(params=["core", "pubsub"])
def redis_site(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield site_env(request.param)


@pytest.mark.redis
async def test_wsgi_view_under_threaded_server_publishes_to_asgi_consumers(
    redis_site: dict[str, str],
) -> None:
    port = free_port()
    with ExitStack() as stack:
        consumers = stack.enter_context(serve(ASGI, env=redis_site, cwd=SITE))
        wsgi = stack.enter_context(
            serve(
                "",
                env=redis_site,
                cwd=SITE,
                command=[sys.executable, str(SITE / "serve_wsgi.py"), str(port)],
                port=port,
            )
        )
        ws = await listen(consumers, "news")
        replies = await publish_concurrently(f"{wsgi.url}/publish/?group=news&n=25", 8)
        frames = await received(ws, 200)
        assert {(f["type"], f["i"]) for f in frames} == {
            ("pub.message", i) for i in range(25)
        }
        # Eight request threads, one publisher loop and its connections.
        assert len({reply["thread"] for reply in replies}) > 1
        assert get(f"{wsgi.url}/ship/?group=news&order=7") == {"shipped": True}
        assert (await received(ws, 1))[0]["text"] == "shipped 7"
        if redis_site["PUB_LAYER"] == "core":
            assert get(f"{wsgi.url}/size/?group=news") == {"size": 1}
        await ws.close()


async def test_django_view_on_asgi_server_publishes_through_in_memory_layer() -> None:
    # The sync views run in Django's worker thread; the in-memory layer and
    # its consumers live on the server's loop, where the publisher sends.
    with serve(ASGI, env=site_env("memory"), cwd=SITE) as server:
        ws = await listen(server, "local")
        await publish_concurrently(f"{server.url}/publish/?group=local&n=10", 8)
        frames = await received(ws, 80)
        assert sorted(f["i"] for f in frames) == sorted(list(range(10)) * 8)
        assert get(f"{server.url}/size/?group=local") == {"size": 1}
        await ws.close()


@pytest.mark.redis
async def test_management_command_publishes_and_exits_promptly(
    redis_site: dict[str, str],
) -> None:
    with serve(ASGI, env=redis_site, cwd=SITE) as consumers:
        ws = await listen(consumers, "ops")
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "publish", "ops", "deployed", "--count", "5"],
            cwd=SITE,
            env={**os.environ, **redis_site, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "sent 5"
        assert done.stderr == ""  # no "Event loop is closed", no warnings
        assert [f["text"] for f in await received(ws, 5)] == ["deployed"] * 5
        assert elapsed < 15  # Django start-up included; exit itself is prompt
        await ws.close()


@pytest.fixture(params=["memory", "core", "pubsub"])
async def layer(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        made: Any = InMemoryChannelLayer(capacity=1000)
    else:
        cls = RedisChannelLayer if request.param == "core" else RedisPubSubChannelLayer
        made = cls(hosts=[require_redis()], prefix=unique_prefix(), capacity=1000)
    yield made
    await made.flush()
    await made.close()


async def test_eight_threads_publish_at_once_and_every_message_arrives(
    layer: Any,
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("crowd", channel)
    publisher = Publisher(layer=layer, timeout=10)
    errors: list[BaseException] = []

    def publish(thread: int) -> None:
        try:
            for i in range(50):
                publisher.group_send("crowd", {"type": "n", "t": thread, "i": i})
        except BaseException as error:  # reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    got = []
    async with deadline(30):
        while len(got) < 400:
            got.append(await layer.receive(channel))
    await asyncio.to_thread(lambda: [thread.join(10) for thread in threads])
    assert errors == []
    by_thread: dict[int, list[int]] = {}
    for message in got:
        by_thread.setdefault(message["t"], []).append(message["i"])
    # Each thread's messages arrive, and in the order it sent them.
    assert by_thread == {t: list(range(50)) for t in range(8)}


async def test_publisher_refuses_to_block_a_running_loop() -> None:
    publisher = Publisher(layer=InMemoryChannelLayer())
    with pytest.raises(RuntimeError, match="await the channel layer"):
        publisher.group_send("g", {"type": "x"})


@pytest.mark.redis
async def test_slow_redis_blocks_caller_until_timeout_never_queues() -> None:
    with private_redis() as server:
        layer = RedisChannelLayer(hosts=[server.url], prefix=unique_prefix())
        publisher = Publisher(layer=layer, timeout=0.5, max_in_flight=2)
        await asyncio.to_thread(publisher.group_add, "g", "c.x!y")  # connections made
        assert server._process is not None
        server._process.send_signal(signal.SIGSTOP)  # Redis stops answering
        try:

            def timed() -> float:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    publisher.group_send("g", {"type": "x"})
                return time.monotonic() - started

            elapsed = await asyncio.gather(
                *(asyncio.to_thread(timed) for _ in range(4))
            )
            # Two calls in flight, two wait for a slot: all four give up in time.
            assert all(0.4 < seconds < 3 for seconds in elapsed), elapsed
        finally:
            server._process.send_signal(signal.SIGCONT)
        await asyncio.to_thread(publisher.group_send, "g", {"type": "x"})


EXITS = textwrap.dedent(
    """
    import sys, time
    from achannels.layers import channel_layers, publisher
    config = {"hosts": [sys.argv[2]], "prefix": sys.argv[3]}
    channel_layers.configure({"default": {"BACKEND": sys.argv[1], "CONFIG": config}})
    publisher.group_send("g", {"type": "x"})
    print(publisher.group_size("g") if "PubSub" not in sys.argv[1] else 0)
    """
)


@pytest.mark.redis
@pytest.mark.parametrize(
    "backend",
    [
        "achannels.layers.redis.RedisChannelLayer",
        "achannels.layers.redis.RedisPubSubChannelLayer",
    ],
)
def test_script_exits_promptly_and_cleanly_after_publishing(backend: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            EXITS,
            backend,
            require_redis(),
            unique_prefix(),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert time.monotonic() - started < 5


FORKS = textwrap.dedent(
    """
    import os, sys, warnings
    warnings.filterwarnings("ignore", "This process .* is multi-threaded")
    from achannels.layers import Publisher
    from achannels.layers.redis import RedisChannelLayer
    layer = RedisChannelLayer(hosts=[sys.argv[1]], prefix=sys.argv[2])
    publisher = Publisher(layer=layer, timeout=5)
    publisher.group_add("g", "c.x!1")
    pid = os.fork()
    if pid == 0:  # a prefork child (Celery, gunicorn --preload) publishes too
        publisher.group_add("g", "c.x!2")
        os._exit(0 if publisher.group_size("g") == 2 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert publisher.group_size("g") == 2
    print("ok")
    """
)


@pytest.mark.redis
def test_publisher_works_in_a_forked_child_and_its_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", FORKS, require_redis(), unique_prefix()],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
