"""The benchmark consumers on Channels 4.3 (``benchmarks.apps.channels_app:app``)."""

from benchmarks.apps.consumers import build, layer_from_env

__all__ = ["app"]

app = build("channels", layer_from_env())
