"""Fixtures shared by the whole suite."""

from __future__ import annotations

# Import hypothesis while the stack is shallow: its pytest plugin otherwise
# imports it at the end of the session, deep in pytest's hooks, where
# CPython 3.11.7's AST validator fails with "AST constructor recursion depth
# mismatch" while pytest rewrites its asserts.
import hypothesis  # noqa: F401
import pytest

from tests.servers import SERVER_KINDS


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each real server the suite runs against."""
    return str(request.param)
