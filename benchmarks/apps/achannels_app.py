"""The benchmark consumers on achannels (``benchmarks.apps.achannels_app:app``)."""

from benchmarks.apps.consumers import build, layer_from_env

__all__ = ["app"]

app = build("achannels", layer_from_env())
