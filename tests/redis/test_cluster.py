"""Both Redis layers on a Redis Cluster: configuration, hash tags, slots
that move, and failovers (manual and a killed master) under traffic.

The behaviour tests of test_layer.py and test_pubsub.py run on a cluster
too (see conftest.py); these are what only a cluster has. Failover tests
start their own cluster with replicas (about six seconds) and print what a
failover cost as ``[figures]`` lines, which docs/redis.md quotes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import redis
from achannels.exceptions import ChannelFull
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from achannels.layers.redis._cluster import slot_of
from achannels.layers.redis._connection import Lane
from tests.support.layers import as_default
from tests.support.redis import unique_prefix
from tests.support.redis_cluster import (
    ClusterNode,
    PrivateCluster,
    background,
    private_cluster,
)
from tests.support.reliability import report

pytestmark = pytest.mark.redis

KINDS = {"core": RedisChannelLayer, "pubsub": RedisPubSubChannelLayer}
#: Detecting a dead master (cluster-node-timeout 1 s), electing a replica,
#: and the layers' reconnect backoff, on a loaded machine.
RECOVERY = 30.0
#: A message on a healthy cluster reaching its receiver, on a loaded machine.
DELIVERY = 30.0


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    """A cluster of our own (three masters), whose slots a test may move."""
    with private_cluster(masters=3) as running:
        yield running


@pytest.fixture
def replicated() -> Iterator[PrivateCluster]:
    """Three masters with a replica each, for failovers."""
    with private_cluster(masters=3, replicas=1) as running:
        yield running


# Configuration


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_mixed_with_other_hosts_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="mixes a Redis Cluster entry with 1 other"):
        KINDS[kind](hosts=[{"cluster": ["redis://a:7000"]}, "redis://b:6379"])


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_url_scheme_is_refused_naming_the_dict_form(kind: str) -> None:
    with pytest.raises(ValueError, match=r"\{'cluster': \['redis://node-1:6379'"):
        KINDS[kind](hosts=["redis+cluster://a:7000"])


def test_cluster_entry_without_seeds_or_with_a_database_is_refused() -> None:
    with pytest.raises(ValueError, match="no seed nodes"):
        RedisChannelLayer(hosts=[{"cluster": []}])
    with pytest.raises(ValueError, match="only database 0"):
        RedisChannelLayer(hosts=[{"cluster": ["redis://a:7000/2"]}])
    with pytest.raises(ValueError, match="cannot have 'address'"):
        RedisChannelLayer(hosts=[{"cluster": ["redis://a:7000"], "address": "x"}])


def test_prefix_with_a_brace_is_refused_on_a_cluster() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisChannelLayer(hosts=[{"cluster": ["redis://a:7000"]}], prefix="{app}")
    RedisChannelLayer(hosts=["redis://a:6379"], prefix="{app}")  # fine on one Redis


def test_key_names_carry_hash_tags_only_on_a_cluster() -> None:
    single = RedisChannelLayer(hosts=["redis://a:6379"], prefix="asgi")
    clustered = RedisChannelLayer(hosts=[{"cluster": ["redis://a:7000"]}])
    # channels_redis's key names, unchanged on a single Redis (wire interop).
    assert single._key("specific.abc!") == "asgispecific.abc!"
    assert single._group_key("room") == b"asgi:group:room"  # bytes, as theirs
    assert clustered._key("specific.abc!") == "asgi{specific.abc!}"
    assert clustered._group_key("room") == b"asgi:group:{room}"
    # A channels_redis in-flight backup shares its channel's slot.
    key = clustered._key("specific.abc!")
    assert slot_of(key) == slot_of(key + "$inflight")


# Keys and nodes


async def test_group_spanning_every_master_gets_each_message_once(
    cluster: PrivateCluster,
) -> None:
    prefix = unique_prefix()
    processes: list[RedisChannelLayer] = []
    try:
        members = []
        nodes: set[int] = set()
        # Each process has one random key: add processes (at least 12) until
        # their keys span every master (12 alone miss one about 2% of runs).
        while len(processes) < 12 or len(nodes) < 3:
            assert len(processes) < 100, "random process keys kept missing a master"
            layer = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
            processes.append(layer)
            for _ in range(3):
                channel = await layer.new_channel()
                await layer.group_add("crowd", channel)
                members.append((layer, channel))
            nodes.add(cluster.master_of(layer._key(layer.non_local_name(channel))).port)
        await processes[0].group_send("crowd", {"type": "m", "n": 1})
        got = await asyncio.wait_for(
            asyncio.gather(*(layer.receive(ch) for layer, ch in members)), DELIVERY
        )
        assert [message["n"] for message in got] == [1] * len(members)
        # Each process key lives where its hash tag says.
        client = redis.cluster.RedisCluster.from_url(cluster.urls[0])
        try:
            group_key = processes[0]._group_key("crowd")
            assert client.zcard(group_key) == len(members)
        finally:
            client.close()
    finally:
        if processes:
            await processes[0].flush()
        for layer in processes:
            await layer.close()


async def test_flush_empties_every_master(cluster: PrivateCluster) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    try:
        for index in range(30):
            await layer.send(f"queue.{index}", {"type": "m"})
            await layer.group_add(f"group{index}", f"queue.{index}")
        counts = [len(node.client().keys(prefix + "*")) for node in cluster.nodes]
        assert sum(counts) == 60 and all(counts)
        await layer.flush()
        assert [node.client().keys(prefix + "*") for node in cluster.nodes] == [[]] * 3
    finally:
        await layer.close()


async def test_core_layer_follows_slots_moved_to_another_master(
    cluster: PrivateCluster,
) -> None:
    prefix = unique_prefix()
    sender = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    receiver = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("room", channel)
        await sender.send(channel, {"type": "before"})
        assert (await asyncio.wait_for(receiver.receive(channel), DELIVERY))[
            "type"
        ] == ("before")
        waiting = asyncio.create_task(receiver.receive(channel))
        await sender.send("jobs", {"type": "queued"})  # waits in its key
        for key in (
            receiver._key(receiver.non_local_name(channel)),
            receiver._group_key("room"),
            receiver._key("jobs"),
        ):
            target = await asyncio.to_thread(cluster.move_away, key)
            assert cluster.master_of(key) is target
        # The sender's slot map is stale: MOVED replies redirect it; the
        # receiver's blocked pop is redirected too.
        await sender.send(channel, {"type": "after"})
        assert (await asyncio.wait_for(waiting, DELIVERY))["type"] == "after"
        await sender.group_send("room", {"type": "group.after"})
        got = await asyncio.wait_for(receiver.receive(channel), DELIVERY)
        assert got["type"] == "group.after"
        assert (await asyncio.wait_for(receiver.receive("jobs"), DELIVERY))["type"] == (
            "queued"
        )
    finally:
        await sender.flush()
        await sender.close()
        await receiver.close()


async def test_core_layer_follows_ask_during_a_slot_migration(
    cluster: PrivateCluster,
) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    try:
        await layer.send("warm", {"type": "m"})  # the slot map is loaded
        key = layer._key("jobs")
        slot = slot_of(key)
        target = next(n for n in cluster.masters() if n is not cluster.master_of(key))
        source = await asyncio.to_thread(cluster.start_migrating, slot, target)
        # The key is new, so the migrating source answers ASK: the script
        # runs on the importing target (after ASKING), not on the source.
        await layer.send("jobs", {"type": "during.migration"})
        assert [keys_in_slot(node, slot) for node in (source, target)] == [0, 1]
        await asyncio.to_thread(cluster.move_slot, slot, target)
        got = await asyncio.wait_for(layer.receive("jobs"), DELIVERY)
        assert got["type"] == "during.migration"
    finally:
        await layer.flush()
        await layer.close()


def keys_in_slot(node: ClusterNode, slot: int) -> int:
    client = node.client()
    try:
        return int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
    finally:
        client.close()


async def test_pubsub_layer_resubscribes_after_its_slots_move(
    cluster: PrivateCluster,
) -> None:
    prefix = unique_prefix()
    sender = RedisPubSubChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    receiver = RedisPubSubChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("room", channel)
        for name in (channel, f"{prefix}__group__room"):
            await asyncio.to_thread(cluster.move_away, name)
        # Pub/sub keeps nothing: publish until the subscription has moved.
        for kind, send in (
            ("direct", lambda: sender.send(channel, {"type": "direct"})),
            ("group", lambda: sender.group_send("room", {"type": "group"})),
        ):
            await until_delivered(receiver, channel, kind, send)
    finally:
        await sender.close()
        await receiver.close()


async def until_delivered(
    receiver: Any, channel: str, kind: str, send: Any, timeout: float = RECOVERY
) -> None:
    """Publish with ``send()`` until ``receiver`` gets a message of type
    ``kind`` on ``channel``. One receive waits throughout (cancelling it
    would unsubscribe the channel)."""
    waiting = asyncio.create_task(receiver.receive(channel))
    try:
        deadline = time.monotonic() + timeout
        while not waiting.done():
            await send()
            await asyncio.wait({waiting}, timeout=0.1)
            if not waiting.done() and time.monotonic() > deadline:
                raise AssertionError(f"no {kind} message after the move")
        assert waiting.result()["type"] == kind
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


# Failovers


async def test_a_connection_to_its_own_socket_counts_as_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A killed master's port in the ephemeral range: now and then the kernel
    # gives a connect() to it that same port as the local one and the socket
    # connects to itself, so each command reads back as its own reply (a
    # CLUSTER SLOTS of garbage, a pump that dies parsing it). Pinning the
    # local port makes the first connect do that every time.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    real_open = asyncio.open_connection
    pinned = [("127.0.0.1", port)]

    async def open_connection(*args: Any, **kwargs: Any) -> Any:
        if pinned:
            kwargs["local_addr"] = pinned.pop()
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    lane = Lane({"address": f"redis://127.0.0.1:{port}"})
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="its own socket"):
            await lane.execute("CLUSTER", "SLOTS", attempts=1)
        assert not pinned  # the self-connection did happen
    finally:
        await lane.aclose()


def replicated_writes(master: ClusterNode) -> int:
    """Wait (at most :data:`RECOVERY`) until a replica of ``master`` has
    every write made so far; return how many have."""
    client = redis.Redis(
        host="127.0.0.1", port=master.port, socket_timeout=RECOVERY + 5
    )
    try:
        return int(client.execute_command("WAIT", 1, int(RECOVERY * 1000)))
    finally:
        client.close()


async def fail_over(cluster: PrivateCluster, key: str, how: str) -> tuple[float, str]:
    """Fail over the master serving ``key`` (``CLUSTER FAILOVER`` on its
    replica, or SIGKILL); return the seconds until the replica is master,
    and what the master said of its replication just before (a diagnosis
    for a later failure: a write it had not replicated is gone)."""
    master = cluster.master_of(key)
    replica = cluster.replica_of(master)
    # What was written before now (the group's membership) must survive a
    # kill: replication is asynchronous, and a replica still catching up
    # (a fresh cluster on a loaded machine) would be promoted without it.
    synced = await asyncio.to_thread(replicated_writes, master)
    before = (
        f"master {master.port} before the failover ({synced} replica(s) "
        f"acknowledged its writes): {replication(master)}"
    )
    started = time.monotonic()
    if how == "manual":
        client = replica.client()
        try:
            client.execute_command("CLUSTER", "FAILOVER")
        finally:
            client.close()
    else:
        master.kill()
    deadline = started + RECOVERY
    while True:
        try:
            if replica.role() == "master" and cluster.master_of(key) is replica:
                return time.monotonic() - started, before
        except (redis.exceptions.RedisError, OSError, LookupError):
            pass
        assert time.monotonic() < deadline, "the replica was never promoted"
        await asyncio.sleep(0.05)


class Traffic:
    """A producer sending numbered messages every few milliseconds and a
    consumer receiving them, counting what a failover costs."""

    def __init__(self, sender: Any, receiver: Any, channel: str) -> None:
        self.sender = sender
        self.receiver = receiver
        self.channel = channel
        self.acked: list[int] = []
        self.failed = 0
        self.received: list[int] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()

    async def produce(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                await self.sender.send(self.channel, {"type": "m", "n": number})
            except (redis.exceptions.ConnectionError, ChannelFull) as error:
                # ChannelFull: the receiver's reader is still on its way to
                # the promoted replica while this producer keeps sending.
                self.failed += 1
                self.errors.append(str(error))
                await asyncio.sleep(0.05)
                continue
            self.acked.append(number)
            await asyncio.sleep(0.005)

    async def consume(self) -> None:
        while True:
            message = await self.receiver.receive(self.channel)
            self.received.append(message["n"])

    async def until(self, condition: Any, timeout: float = RECOVERY) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, (
                f"acked {len(self.acked)}, received {len(self.received)}, "
                f"failed {self.failed}: {self.errors[-1:]}"
            )
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@pytest.mark.parametrize("how", ["manual", "kill"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.timeout(120)
async def test_failover_under_traffic_resumes_delivery(
    replicated: PrivateCluster,
    kind: str,
    how: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = unique_prefix()
    events: list[str] = []
    sender = KINDS[kind](hosts=replicated.config_hosts, prefix=prefix)
    if kind == "pubsub":
        receiver: Any = RedisPubSubChannelLayer(
            hosts=replicated.config_hosts,
            prefix=prefix,
            on_disconnect=lambda: events.append("disconnect"),
            on_reconnect=lambda: events.append("reconnect"),
        )
    else:
        receiver = RedisChannelLayer(hosts=replicated.config_hosts, prefix=prefix)
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("room", channel)
        key = (
            receiver._key(receiver.non_local_name(channel))
            if kind == "core"
            else channel
        )
        traffic = Traffic(sender, receiver, channel)
        async with background(traffic.consume(), traffic.produce()) as tasks:
            consumer, producer = tasks
            await traffic.until(lambda: len(traffic.received) >= 100)
            promoted_after, before = await fail_over(replicated, key, how)
            acked_before = len(traffic.acked)
            # Delivery resumes: 100 more messages sent after the promotion
            # arrive, and the consumer never crashed.
            await traffic.until(lambda: len(traffic.acked) >= acked_before + 100)
            last = traffic.acked[-1]
            await traffic.until(lambda: last in traffic.received)
            traffic.stop()
            await producer
            assert not consumer.done()
        # The group works again too.
        await until_delivered_group(sender, receiver, channel, replicated, before)
        acked = set(traffic.acked)
        received = traffic.received
        lost = len(acked - set(received))
        duplicated = len(received) - len(set(received))
        report(
            capsys,
            f"cluster failover ({how}, {kind} layer): replica promoted after "
            f"{promoted_after:.1f}s; {len(acked)} sends acknowledged, "
            f"{traffic.failed} refused (ConnectionError or ChannelFull), "
            f"{lost} acknowledged but lost, {duplicated} delivered twice",
        )
        if kind == "core" and how == "manual":
            # A manual failover waits for the replica to catch up.
            assert lost == 0
        if kind == "pubsub" and how == "kill":
            assert events[:1] == ["disconnect"] and "reconnect" in events
    finally:
        for layer in (sender, receiver):
            await layer.close()


async def until_delivered_group(
    sender: Any,
    receiver: Any,
    channel: str,
    cluster: PrivateCluster,
    before: str,
) -> None:
    """Send to the group until the marker message reaches ``receiver`` (one
    receive waiting throughout); fail with what explains it at the deadline
    (``before``: the failed-over master's replication before the failover)."""
    deadline = time.monotonic() + RECOVERY

    async def marker() -> None:
        while (await receiver.receive(channel))["n"] != -1:
            pass

    waiting = asyncio.create_task(marker())
    sends = 0
    last_error: BaseException | None = None
    try:
        while not waiting.done():
            if time.monotonic() > deadline:
                diagnosis = await group_diagnosis(sender, channel, cluster)
                raise AssertionError(
                    f"group_send never arrived again ({sends} sent, last "
                    f"error {last_error!r})\n{before}\n{diagnosis}"
                )
            try:
                await sender.group_send("room", {"type": "m", "n": -1})
                sends += 1
            except redis.exceptions.ConnectionError as error:
                last_error = error  # The group's master is still failing over.
            await asyncio.wait({waiting}, timeout=0.1)
        waiting.result()
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


def replication(node: ClusterNode) -> str:
    """``node``'s ``INFO replication`` in one line, or why it has none."""
    if not node.running:
        return "not running"
    client = node.client()
    try:
        info = client.info("replication")
    except (redis.exceptions.RedisError, OSError) as error:
        return f"no answer ({error})"
    finally:
        client.close()
    return ", ".join(f"{key}={value}" for key, value in info.items())


def node_diagnosis(node: ClusterNode, keys: list[str]) -> str:
    """What ``node`` says of the cluster, its replication and ``keys``."""
    if not node.running:
        return f"node {node.port}: killed"
    lines = [f"node {node.port}: {replication(node)}"]
    client = node.client()
    try:
        info = node.cluster_info()
        lines.append(
            f"  CLUSTER INFO state={info.get('cluster_state')} "
            f"epoch={info.get('cluster_current_epoch')} "
            f"slots_ok={info.get('cluster_slots_ok')} "
            f"known_nodes={info.get('cluster_known_nodes')}"
        )
        slots = client.execute_command("CLUSTER", "SLOTS")
        lines.append(
            "  CLUSTER SLOTS "
            + "; ".join(
                f"{start}-{end} at {int(master[1])}" for start, end, master, *_ in slots
            )
        )
        for key in keys:
            try:
                found = client.execute_command("ZRANGE", key, 0, -1, "WITHSCORES")
            except redis.exceptions.ResponseError as error:
                found = f"({error})"  # MOVED: not this node's slot
            lines.append(f"  ZRANGE {key} {found!r:.300}")
    except (redis.exceptions.RedisError, OSError) as error:
        lines.append(f"  no answer ({error})")
    finally:
        client.close()
    return "\n".join(lines)


async def group_diagnosis(sender: Any, channel: str, cluster: PrivateCluster) -> str:
    """Why a group message might not arrive: the group's members as the
    sender sees them (core layer), and each node's view."""
    lines = []
    keys = []
    if isinstance(sender, RedisChannelLayer):
        group_key = sender._group_key_str("room")
        keys = [group_key, sender._key(sender.non_local_name(channel))]
        cluster_state = sender._states.get().cluster
        try:
            lane = await cluster_state.lane_for(group_key)
            members = await cluster_state.execute(
                group_key, "ZRANGE", group_key, 0, -1, "WITHSCORES"
            )
            lines.append(
                f"the sender reads {group_key} at {lane.description}: {members!r:.300}"
            )
        except redis.exceptions.RedisError as error:
            lines.append(f"the sender cannot read {group_key}: {error!r}")
    lines += await asyncio.gather(
        *(asyncio.to_thread(node_diagnosis, node, keys) for node in cluster.nodes)
    )
    return "\n".join(lines)


async def test_event_history_on_a_cluster_takes_the_layers_hosts(
    cluster: PrivateCluster,
) -> None:
    from achannels.layers.redis import RedisEventHistory

    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=cluster.config_hosts, prefix=prefix)
    with as_default(layer):
        history = RedisEventHistory(prefix=prefix, max_events=10)
        try:
            member = await layer.new_channel()
            await layer.group_add("news", member)
            sent = [
                await history.group_send(group, {"type": "x", "n": n})
                for n in range(3)
                for group in ("news", "sport")
            ]
            assert (await asyncio.wait_for(layer.receive(member), DELIVERY))["n"] == 0
            events = await history.read_after("news", "0-0")
            assert [event["n"] for event in events] == [0, 1, 2]
            assert await history.last_id("sport") == sent[-1]
        finally:
            await history.aclose()
            await layer.flush()
            await layer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_startup_check_pings_the_cluster_seeds(
    kind: str, redis_cluster: PrivateCluster
) -> None:
    layer: Any = KINDS[kind](hosts=redis_cluster.config_hosts)
    assert await layer._check_reachable() == []
    vacant = ["redis://127.0.0.1:1", "redis://127.0.0.1:2"]
    down: Any = KINDS[kind](hosts=[{"cluster": vacant}])
    (problem,) = await down._check_reachable()
    assert "No seed of the Redis Cluster via redis://127.0.0.1:1" in problem
    # One live seed is enough.
    mixed: Any = KINDS[kind](hosts=[{"cluster": [vacant[0], redis_cluster.urls[0]]}])
    assert await mixed._check_reachable() == []


async def test_pubsub_receive_cancelled_and_repeated_keeps_its_subscription(
    redis_cluster: PrivateCluster,
) -> None:
    # A cancelled receive unsubscribes; the next one subscribes again on the
    # same master. Redis's reply to our own SUNSUBSCRIBE must not be taken
    # for the node dropping the channel, and the SUNSUBSCRIBE must not reach
    # Redis after the new SSUBSCRIBE.
    prefix = unique_prefix()
    sender = RedisPubSubChannelLayer(hosts=redis_cluster.config_hosts, prefix=prefix)
    receiver = RedisPubSubChannelLayer(hosts=redis_cluster.config_hosts, prefix=prefix)
    try:
        channel = await receiver.new_channel()
        for _ in range(50):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(receiver.receive(channel), 0.001)
        # No yield between the cancel and the next subscribe.
        waiting = asyncio.create_task(receiver.receive(channel))
        await until_delivered_task(sender, channel, waiting)
    finally:
        await sender.close()
        await receiver.close()


async def until_delivered_task(sender: Any, channel: str, waiting: Any) -> None:
    """Publish until the ``waiting`` receive gets a message (pub/sub keeps
    nothing sent before the subscription is confirmed)."""
    deadline = time.monotonic() + RECOVERY
    while not waiting.done():
        await sender.send(channel, {"type": "direct"})
        await asyncio.wait({waiting}, timeout=0.05)
        assert time.monotonic() < deadline, "the receive never got a message"
    assert waiting.result()["type"] == "direct"
