"""No Django views: the packages under test serve everything."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
