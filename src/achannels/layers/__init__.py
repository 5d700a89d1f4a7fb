"""Channel layers: the base class, the in-memory layer and the alias manager.

Module paths and names follow ``channels.layers`` (Channels 4.3). The Redis
layers live in :mod:`achannels.layers.redis`.
"""

from .. import DEFAULT_CHANNEL_LAYER as DEFAULT_CHANNEL_LAYER
from ..exceptions import ChannelFull as ChannelFull
from ..exceptions import InvalidChannelLayerError as InvalidChannelLayerError
from ._base import BaseChannelLayer
from ._manager import ChannelLayerManager, channel_layers, get_channel_layer
from ._publisher import Publisher, publisher
from .memory import InMemoryChannelLayer

__all__ = [
    "BaseChannelLayer",
    "ChannelLayerManager",
    "InMemoryChannelLayer",
    "Publisher",
    "channel_layers",
    "get_channel_layer",
    "publisher",
]
