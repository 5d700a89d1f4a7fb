"""Channel layers as the ``"default"`` alias for one test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from achannels.layers import BaseChannelLayer, channel_layers

__all__ = ["as_default"]

Layer = TypeVar("Layer", bound=BaseChannelLayer)


@contextmanager
def as_default(layer: Layer) -> Iterator[Layer]:
    """Make ``layer`` the default alias for the block, then restore what
    was there before (or nothing)."""
    previous = channel_layers.set("default", layer)
    try:
        yield layer
    finally:
        if previous is None:
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", previous)
