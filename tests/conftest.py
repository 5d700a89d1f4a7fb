"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

from tests.servers import SERVER_KINDS


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each real server the suite runs against."""
    return str(request.param)
