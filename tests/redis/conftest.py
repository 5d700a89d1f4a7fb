"""Fixtures of the Redis layer tests: the behaviour tests run on the shared
single Redis and on a Redis Cluster the session starts (one per xdist
worker, three masters; about two seconds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.redis import require_redis
from tests.support.redis_cluster import PrivateCluster, RedisDeployment

DEPLOYMENTS = ["single", "cluster"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[PrivateCluster]:
    """A three-master Redis Cluster shared by this session's tests (they
    use unique prefixes, and never change its topology)."""
    cluster = PrivateCluster(masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> RedisDeployment:
    """The single Redis, then the cluster."""
    if request.param == "single":
        return RedisDeployment("single", [require_redis()], None)
    cluster: PrivateCluster = request.getfixturevalue("redis_cluster")
    return RedisDeployment("cluster", cluster.config_hosts, cluster)


LayerFactory = Callable[..., Any]
