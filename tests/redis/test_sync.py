"""Using the Redis layers from sync code: ``async_to_sync`` from plain threads
(each call on a new event loop), as Django views, management commands and
Celery tasks do -- no cross-loop errors, connections reused, none leaked."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync

import redis
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import require_redis, unique_prefix
from tests.support.redis_cluster import RedisDeployment

pytestmark = pytest.mark.redis

THREADS = 4
CALLS = 10


def connections_named(name: str) -> int:
    client = redis.Redis.from_url(require_redis())
    try:
        return sum(1 for entry in client.client_list() if entry["name"] == name)
    finally:
        client.close()


def run_threads(target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_async_to_sync_from_threads_reuses_connections_and_leaks_none(
    kind: str,
) -> None:
    name = f"achannels-test-{uuid.uuid4().hex[:8]}"
    config = {
        "hosts": [{"address": require_redis(), "client_name": name}],
        "prefix": unique_prefix(),
    }
    layer = (RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer)(**config)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        first = asyncio.create_task(layer.receive(channel))
        await layer.group_send("room", {"type": "warm"})
        assert (await asyncio.wait_for(first, 5))["type"] == "warm"
        before = connections_named(name)

        def sync_caller() -> None:
            for number in range(CALLS):
                async_to_sync(layer.group_send)(
                    "room", {"type": "from.thread", "n": number}
                )
                async_to_sync(layer.send)(channel, {"type": "direct", "n": number})

        counts = []
        for _ in range(2):
            errors = await asyncio.to_thread(run_threads, sync_caller)
            assert errors == []
            got = [
                await asyncio.wait_for(layer.receive(channel), 5)
                for _ in range(2 * THREADS * CALLS)
            ]
            assert sum(message["type"] == "from.thread" for message in got) == (
                THREADS * CALLS
            )
            counts.append(connections_named(name))
        # Sync callers share one background loop's connections: however
        # many calls, at most one per thread at once plus the loop's own
        # (a busy machine may overlap calls differently in each round, so
        # the bound, not the exact count, is the claim), and closing the
        # layer from sync code closes them.
        assert max(counts) <= before + THREADS + 1, counts
        await asyncio.to_thread(async_to_sync(layer.close))
        assert connections_named(name) <= before
    finally:
        await layer.close()


def test_sync_worker_receives_on_plain_channel_call_after_call(
    deployment: RedisDeployment,
) -> None:
    layer = RedisChannelLayer(hosts=deployment.hosts, prefix=unique_prefix())
    try:
        for number in range(5):
            async_to_sync(layer.send)("worker.jobs", {"type": "job", "n": number})
        received = [async_to_sync(layer.receive)("worker.jobs") for _ in range(5)]
        assert [message["n"] for message in received] == list(range(5))
    finally:
        async_to_sync(layer.flush)()
        async_to_sync(layer.close)()


def test_same_layer_used_by_several_event_loops_in_turn(
    deployment: RedisDeployment,
) -> None:
    layer = RedisChannelLayer(hosts=deployment.hosts, prefix=unique_prefix())

    async def round_trip(number: int) -> int:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "m", "n": number})
        message = await asyncio.wait_for(layer.receive(channel), 5)
        return int(message["n"])

    try:
        assert [asyncio.run(round_trip(number)) for number in range(3)] == [0, 1, 2]
    finally:
        asyncio.run(layer.flush())


def test_specific_channels_received_in_later_async_to_sync_calls() -> None:
    # channels_redis's own sequence: channels made and sent to in one call
    # each, close_pools() after every call, received in later calls. The
    # first receive reads both messages from Redis; the second must still
    # find its own after close_pools().
    layer = RedisChannelLayer(hosts=[require_redis()], prefix=unique_prefix())
    first = async_to_sync(layer.new_channel)()
    second = async_to_sync(layer.new_channel)()

    async def send_then_close(channel: str, n: int) -> None:
        await layer.send(channel, {"type": "m", "n": n})
        await layer.close_pools()

    async def receive_then_close(channel: str) -> dict[str, Any]:
        message = await asyncio.wait_for(layer.receive(channel), 5)
        await layer.close_pools()
        return message

    async_to_sync(send_then_close)(first, 1)
    async_to_sync(send_then_close)(second, 2)
    assert async_to_sync(receive_then_close)(second) == {"type": "m", "n": 2}
    assert async_to_sync(receive_then_close)(first) == {"type": "m", "n": 1}
    async_to_sync(layer.flush)()


def test_process_exits_while_a_sync_receive_still_waits() -> None:
    # A sync caller abandoned in receive() (a test timeout, say): its
    # async_to_sync worker thread must not keep the interpreter from exiting.
    code = f"""
        import signal, sys
        from asgiref.sync import async_to_sync
        from achannels.layers.redis import RedisChannelLayer

        layer = RedisChannelLayer(
            hosts=[{require_redis()!r}], prefix={unique_prefix()!r}
        )
        channel = async_to_sync(layer.new_channel)()

        def give_up(signum, frame):
            raise TimeoutError("gave up waiting")

        signal.signal(signal.SIGALRM, give_up)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        try:
            async_to_sync(layer.receive)(channel)
        except TimeoutError:
            print("gave up", flush=True)
    """
    import subprocess
    import sys
    import textwrap

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() == "gave up", result.stderr
    assert result.returncode == 0, result.stderr
