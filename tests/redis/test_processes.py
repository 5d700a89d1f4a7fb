"""Two OS processes exchanging group messages through Redis, for both layer
kinds: what several uvicorn workers sharing a chat room rely on."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap

import pytest

from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import unique_prefix
from tests.support.redis_cluster import RedisDeployment

pytestmark = pytest.mark.redis

# A worker process: joins "room", reports its channel, and on "ping"
# group-sends a "pong"; every "pong" it sees is reported to the test.
WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer

    async def main(kind, hosts, prefix, report_to):
        cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
        layer = cls(hosts=json.loads(hosts), prefix=prefix)
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        print(json.dumps({"ready": channel}), flush=True)
        while True:
            message = await layer.receive(channel)
            if message["type"] == "ping":
                await layer.group_send("room", {"type": "pong", "from": os.getpid()})
            elif message["type"] == "pong":
                await layer.send(
                    report_to,
                    {"type": "saw", "pong_from": message["from"], "me": os.getpid()},
                )
            elif message["type"] == "stop":
                break
        await layer.close()

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_two_processes_exchange_group_messages(
    kind: str, deployment: RedisDeployment
) -> None:
    prefix = unique_prefix()
    layer = (RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer)(
        hosts=deployment.hosts, prefix=prefix
    )
    report_to = await layer.new_channel()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            kind,
            json.dumps(deployment.hosts),
            prefix,
            report_to,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        channels = []
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            channels.append(json.loads(line)["ready"])
        await layer.send(channels[0], {"type": "ping"})
        reports = [
            await asyncio.wait_for(layer.receive(report_to), 10) for _ in workers
        ]
        first_pid = workers[0].pid
        assert {report["me"] for report in reports} == {w.pid for w in workers}
        assert all(report["pong_from"] == first_pid for report in reports)
        for channel in channels:
            await layer.send(channel, {"type": "stop"})
        for worker in workers:
            assert await asyncio.wait_for(worker.wait(), 10) == 0
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await layer.close()
