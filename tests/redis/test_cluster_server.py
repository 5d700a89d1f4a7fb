"""Two uvicorn processes on one Redis Cluster, a group spanning both, and
the master serving the group killed mid-traffic: every connection stays
open and delivery to every member resumes once a replica took over."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect

from achannels.layers.redis import RedisChannelLayer
from tests.support.redis import unique_prefix
from tests.support.redis_cluster import background, private_cluster
from tests.support.reliability import report
from tests.support.servers import serve

pytestmark = pytest.mark.redis

APP = "tests.redis.cluster_app:application"
CLIENTS_PER_SERVER = 5
RECOVERY = 30.0


class Client:
    """A member's WebSocket and the texts it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.texts: list[str] = []

    async def read(self) -> None:
        async for text in self.ws:
            assert isinstance(text, str)
            self.texts.append(text)


@pytest.mark.parametrize("kind", ["core", "pubsub"])
@pytest.mark.timeout(120)
async def test_group_across_two_servers_survives_a_killed_master(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with private_cluster(masters=3, replicas=1) as cluster:
        prefix = unique_prefix()
        env = {
            "CLUSTER_APP_HOSTS": json.dumps(cluster.config_hosts),
            "CLUSTER_APP_PREFIX": prefix,
            "CLUSTER_APP_LAYER": kind,
        }
        with (
            serve(APP, "uvicorn-websockets", env=env) as first,
            serve(APP, "uvicorn-websockets", env=env) as second,
        ):
            clients = []
            for server in (first, second):
                for _ in range(CLIENTS_PER_SERVER):
                    ws = await connect(f"{server.ws_url}/ws/room/")
                    clients.append(Client(ws))
            async with background(*(client.read() for client in clients)) as readers:
                sender = clients[0]

                async def delivered_to_all(text: str, timeout: float) -> bool:
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        if all(text in client.texts for client in clients):
                            return True
                        await asyncio.sleep(0.02)
                    return False

                await sender.ws.send("hello")
                assert await delivered_to_all("hello", RECOVERY)

                group = (
                    RedisChannelLayer(
                        hosts=cluster.config_hosts, prefix=prefix
                    )._group_key("room")
                    if kind == "core"
                    else f"{prefix}__group__room"
                )
                master = cluster.master_of(group)
                master.kill()
                killed_at = time.monotonic()
                # Keep talking until a message sent after the kill reaches
                # every member on both servers.
                number = 0
                while True:
                    number += 1
                    await sender.ws.send(f"m{number}")
                    if await delivered_to_all(f"m{number}", 0.5):
                        break
                    assert time.monotonic() - killed_at < RECOVERY, (
                        f"no delivery {RECOVERY}s after the kill; sender saw "
                        f"{sender.texts[-3:]}"
                    )
                resumed_after = time.monotonic() - killed_at
                for extra in range(20):
                    await sender.ws.send(f"after{extra}")
                for extra in range(20):
                    assert await delivered_to_all(f"after{extra}", RECOVERY)
                assert not any(reader.done() for reader in readers)
                for client in clients:
                    await client.ws.close()
            report(
                capsys,
                f"uvicorn x2 on a cluster ({kind} layer), group master killed: "
                f"delivery to all {len(clients)} members resumed after "
                f"{resumed_after:.1f}s; the sender was told 'unavailable' "
                f"{sender.texts.count('unavailable')} time(s)",
            )
