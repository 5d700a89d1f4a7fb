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

# `import achannels` then `achannels.routing`, `achannels.db`, ...: loaded on
# first use (Channels code relies on its imports having loaded them).
from ._submodules import lazy_submodules as _lazy_submodules  # noqa: E402

__getattr__ = _lazy_submodules(__name__, __path__)
