"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

# Import hypothesis while the stack is shallow: its pytest plugin otherwise
# imports it at the end of the session, deep in pytest's hooks, where
# CPython 3.11.7's AST validator fails with "AST constructor recursion depth
# mismatch" while pytest rewrites its asserts.
import hypothesis  # noqa: F401
import pytest

from achannels.layers import InMemoryChannelLayer
from tests.support.layers import as_default
from tests.support.redis_cluster import PrivateCluster
from tests.support.servers import SERVER_KINDS


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each real server the suite runs against."""
    return str(request.param)


@pytest.fixture
def memory_layer() -> Iterator[InMemoryChannelLayer]:
    """A fresh in-memory layer as the default alias for one test."""
    with as_default(InMemoryChannelLayer()) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[PrivateCluster]:
    """A three-master Redis Cluster shared by this session's tests (one per
    xdist worker, started on first use in about two seconds; tests use
    unique prefixes and never change its topology)."""
    cluster = PrivateCluster(masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
