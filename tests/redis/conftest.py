"""Fixtures of the Redis layer tests: the behaviour tests run on the shared
single Redis and on the session's Redis Cluster (``redis_cluster``, in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.redis import require_redis
from tests.support.redis_cluster import PrivateCluster, RedisDeployment

DEPLOYMENTS = ["single", "cluster"]


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest) -> RedisDeployment:
    """The single Redis, then the cluster."""
    if request.param == "single":
        return RedisDeployment("single", [require_redis()], None)
    cluster: PrivateCluster = request.getfixturevalue("redis_cluster")
    return RedisDeployment("cluster", cluster.config_hosts, cluster)


LayerFactory = Callable[..., Any]
