"""achannels: the Django Channels programming model on plain asyncio."""

from ._install import (
    ChannelsAlreadyImportedError,
    ChannelsInstalledWarning,
    install_as_channels,
)

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "ChannelsAlreadyImportedError",
    "ChannelsInstalledWarning",
    "__version__",
    "install_as_channels",
]

__version__ = "0.1.0"

DEFAULT_CHANNEL_LAYER = "default"
