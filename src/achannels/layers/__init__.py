"""Channel layers: the base class, the in-memory layer and the alias manager.

Module paths and names follow ``channels.layers`` (Channels 4.3).
"""

from ._base import BaseChannelLayer

__all__ = ["BaseChannelLayer"]
