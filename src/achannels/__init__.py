"""achannels: the Django Channels programming model on plain asyncio."""

__all__ = ["DEFAULT_CHANNEL_LAYER", "__version__"]

__version__ = "0.1.0"

DEFAULT_CHANNEL_LAYER = "default"
