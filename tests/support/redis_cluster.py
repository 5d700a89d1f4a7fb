"""Redis Clusters for the tests, started by the suite itself.

:class:`PrivateCluster` starts ``masters`` (and ``replicas`` per master)
``redis-server --cluster-enabled yes`` processes on free loopback ports in a
temporary directory, joins them with ``redis-cli --cluster create``, waits
until every node agrees the cluster is up, and stops them by pid. Failures
are detected quickly (``cluster-node-timeout`` 1 s), so a failover test does
not wait 15 s for each.

Without ``redis-server``/``redis-cli`` the test skips, or fails when
``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import redis.cluster

import redis

__all__ = [
    "ClusterNode",
    "PrivateCluster",
    "RedisDeployment",
    "background",
    "private_cluster",
]

NODE_TIMEOUT_MS = 1000


def _missing(what: str) -> None:
    message = f"{what} is not installed: cannot start a Redis Cluster"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port(taken: set[int]) -> int:
    """Return a port that is free, and whose bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randrange(20000, 45000)
        if port in taken or port + 10000 in taken:
            continue
        if _port_free(port) and _port_free(port + 10000):
            taken.update((port, port + 10000))
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class ClusterNode:
    """One ``redis-server`` of a :class:`PrivateCluster`."""

    def __init__(self, executable: str, directory: str, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self._directory = os.path.join(directory, str(port))
        os.makedirs(self._directory, exist_ok=True)
        self._executable = executable
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (keeping its cluster config, so a node that was
        killed comes back as the member it was)."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self._executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self._directory,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """Kill the server (SIGKILL: no goodbye to clients or the cluster)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    @property
    def running(self) -> bool:
        """Whether this node's process is running."""
        return self.process is not None

    def client(self) -> redis.Redis:
        """Return a synchronous client of this node alone."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def cluster_info(self) -> dict[str, str]:
        """Return this node's ``CLUSTER INFO`` fields."""
        client = self.client()
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line.strip()
        )

    def replica_ports(self) -> set[int]:
        """Return the ports of the replicas connected to this master."""
        client = self.client()
        try:
            reply = client.execute_command("ROLE")
        finally:
            client.close()
        return {int(entry[1]) for entry in reply[2]}

    def node_id(self) -> str:
        """Return this node's cluster id."""
        client = self.client()
        try:
            reply = client.execute_command("CLUSTER", "MYID")
        finally:
            client.close()
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def role(self) -> str:
        """Return ``"master"`` or ``"slave"`` (as ``ROLE`` says)."""
        client = self.client()
        try:
            reply = client.execute_command("ROLE")
        finally:
            client.close()
        role = reply[0]
        return role.decode() if isinstance(role, bytes) else str(role)


class PrivateCluster:
    """A Redis Cluster owned by a test (or a test session)."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            _missing("redis-server")
        cli = shutil.which("redis-cli")
        if cli is None:
            _missing("redis-cli")
        assert executable is not None and cli is not None
        self._cli = cli
        self._directory = tempfile.TemporaryDirectory(prefix="achannels-cluster-")
        taken: set[int] = set()
        self.replicas = replicas
        self.nodes = [
            ClusterNode(executable, self._directory.name, _free_cluster_port(taken))
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def config_hosts(self) -> list[dict[str, list[str]]]:
        """The ``hosts`` option of a layer on this cluster (two seed nodes)."""
        return [{"cluster": self.urls[:2]}]

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait(lambda node=node: self._pings(node), deadline, "start")
        subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        self.wait_healthy(deadline - time.monotonic())

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Return once every running node says the cluster is ok, knows all
        16384 slots, and (with replicas) every master has a replica."""
        deadline = time.monotonic() + timeout
        self._wait(self._healthy, deadline, "become healthy")

    def _healthy(self) -> bool:
        masters = 0
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info = node.cluster_info()
                if info.get("cluster_state") != "ok":
                    return False
                if info.get("cluster_slots_ok") != "16384":
                    return False
                if node.role() == "master":
                    masters += 1
                    if len(node.replica_ports()) < self.replicas:
                        return False
            except (redis.exceptions.RedisError, OSError):
                return False
        return masters == len(self.nodes) // (1 + self.replicas)

    @staticmethod
    def _pings(node: ClusterNode) -> bool:
        client = node.client()
        try:
            return bool(client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    @staticmethod
    def _wait(condition: object, deadline: float, what: str) -> None:
        assert callable(condition)
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis Cluster did not {what} in time")
            time.sleep(0.05)

    def master_of(self, key: str | bytes) -> ClusterNode:
        """Return the node that serves ``key``'s slot now."""
        return self.master_of_slot(redis.crc.key_slot(_bytes(key)))

    def masters(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running and n.role() == "master"]

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        """Return a running replica of ``master``."""
        ports = master.replica_ports()
        return next(n for n in self.nodes if n.running and n.port in ports)

    def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Migrate ``slot`` (and its keys) to master ``target``, as
        ``redis-cli --cluster reshard`` does."""
        if self.master_of_slot(slot) is target:
            return
        source = self.start_migrating(slot, target)
        source_client = source.client()
        try:
            while keys := source_client.execute_command(
                "CLUSTER", "GETKEYSINSLOT", slot, 100
            ):
                source_client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
            for node in self.masters():
                client = node.client()
                try:
                    client.execute_command(
                        "CLUSTER", "SETSLOT", slot, "NODE", target.node_id()
                    )
                finally:
                    client.close()
        finally:
            source_client.close()

    def move_away(self, key: str | bytes) -> ClusterNode:
        """Move ``key``'s slot to another master; return that master."""
        source = self.master_of(key)
        target = next(node for node in self.masters() if node is not source)
        self.move_slot(redis.crc.key_slot(_bytes(key)), target)
        return target

    def start_migrating(self, slot: int, target: ClusterNode) -> ClusterNode:
        """Mark ``slot`` as migrating from its master to ``target`` without
        moving keys (the window in which the source answers ASK for keys it
        does not have); return the source. :meth:`move_slot` finishes it."""
        source = self.master_of_slot(slot)
        target_client, source_client = target.client(), source.client()
        try:
            target_client.execute_command(
                "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()
            )
            source_client.execute_command(
                "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()
            )
        finally:
            target_client.close()
            source_client.close()
        return source

    def master_of_slot(self, slot: int) -> ClusterNode:
        """Return the master serving ``slot`` now."""
        for node in self.masters():
            client = node.client()
            try:
                for start, end, master, *_ in client.execute_command(
                    "CLUSTER", "SLOTS"
                ):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(master[1]))
            finally:
                client.close()
        raise LookupError(f"no master serves slot {slot}")

    def stop(self) -> None:
        """Kill every node and remove the directory."""
        for node in self.nodes:
            node.kill()
        self._directory.cleanup()


@contextmanager
def private_cluster(masters: int = 3, replicas: int = 0) -> Iterator[PrivateCluster]:
    """Run a private Redis Cluster for the duration of the block."""
    cluster = PrivateCluster(masters, replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class RedisDeployment:
    """Where a parametrised behaviour test runs: the shared single Redis or
    a cluster. ``hosts`` is the layers' option; :meth:`client` a raw client
    for assertions on what is stored."""

    def __init__(
        self, kind: str, hosts: list[Any], cluster: PrivateCluster | None
    ) -> None:
        self.kind = kind
        self.hosts = hosts
        self.cluster = cluster

    def __repr__(self) -> str:
        return self.kind

    def client(self) -> Any:
        """Return a synchronous client: ``redis.Redis`` or
        ``redis.cluster.RedisCluster`` (KEYS asks every master)."""
        if self.cluster is None:
            return redis.Redis.from_url(self.hosts[0])
        return redis.cluster.RedisCluster.from_url(self.cluster.urls[0])

    def subscribers(self, channel: str) -> int:
        """Return how many connections listen on pub/sub ``channel`` (sharded
        on a cluster)."""
        if self.cluster is None:
            client = redis.Redis.from_url(self.hosts[0])
            try:
                return int(dict(client.pubsub_numsub(channel))[channel.encode()])
            finally:
                client.close()
        node = self.cluster.master_of(channel)
        client = node.client()
        try:
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        finally:
            client.close()
        return int(reply[1])


@asynccontextmanager
async def background(
    *coroutines: Coroutine[Any, Any, Any],
) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run ``coroutines`` as tasks for the block; then cancel and await them,
    and raise the first error one of them ended with (a TaskGroup that also
    runs on Python 3.10)."""
    tasks = [asyncio.get_running_loop().create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
