"""The benchmark consumers on Channels 4.3 (``benchmarks.apps.channels_app:app``)."""

from benchmarks.apps.consumers import build

__all__ = ["app"]

app = build("channels")
