"""The benchmark consumers on achannels (``benchmarks.apps.achannels_app:app``)."""

from benchmarks.apps.consumers import build

__all__ = ["app"]

app = build("achannels")
