"""Channel layer aliases: configuration, lazy construction, shutdown.

Configuration comes from Django's ``CHANNEL_LAYERS`` setting when Django is
in use, else from :meth:`ChannelLayerManager.configure`. Django is imported
only inside the functions that read it, and only when a settings module is
named or ``django.conf`` was already imported: a project without Django never
imports it through here.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from .. import DEFAULT_CHANNEL_LAYER
from ..exceptions import InvalidChannelLayerError

__all__ = [
    "BACKEND_ALIASES",
    "ChannelLayerManager",
    "channel_layers",
    "get_channel_layer",
]

logger = logging.getLogger("achannels.layers")

#: Channels and channels_redis ``BACKEND`` paths and the achannels layer each
#: one builds, so Channels settings work unchanged.
BACKEND_ALIASES: dict[str, str] = {
    "channels.layers.InMemoryChannelLayer": "achannels.layers.InMemoryChannelLayer",
    "channels_redis.core.RedisChannelLayer": "achannels.layers.redis.RedisChannelLayer",
    "channels_redis.pubsub.RedisPubSubChannelLayer": (
        "achannels.layers.redis.RedisPubSubChannelLayer"
    ),
}


class _MissingAliasError(InvalidChannelLayerError, KeyError):
    """An alias with no configuration; a ``KeyError`` too, as in Channels,
    whose ``get_channel_layer`` turns it into ``None``."""

    def __str__(self) -> str:
        # KeyError would print the message as a quoted repr.
        return str(self.args[0]) if self.args else ""


def _django_layers(manager: ChannelLayerManager) -> Mapping[str, Any] | None:
    """Return Django's ``CHANNEL_LAYERS`` when Django is in use, else ``None``.

    Django counts as in use when ``DJANGO_SETTINGS_MODULE`` is set or
    ``django.conf`` was imported and its settings are configured.
    """
    if "django.conf" not in sys.modules and not os.environ.get(
        "DJANGO_SETTINGS_MODULE"
    ):
        return None
    try:
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    manager._watch_django_settings()
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        return None
    if not isinstance(layers, Mapping):
        raise InvalidChannelLayerError(
            f"settings.CHANNEL_LAYERS must be a dict of aliases, got "
            f"{type(layers).__name__}"
        )
    return layers


class ChannelLayerManager:
    """Builds channel layers by alias on first use and keeps them.

    ``manager[alias]`` returns the layer for ``alias``, building it from its
    configuration ``{"BACKEND": "dotted.path", "CONFIG": {...},
    "TEST_CONFIG": {...}}`` the first time. The configuration is Django's
    ``settings.CHANNEL_LAYERS`` when Django is configured and the setting
    exists, else what :meth:`configure` was given (empty by default).

    ``BACKEND`` may name a Channels or channels_redis layer; it builds the
    achannels equivalent (see :data:`BACKEND_ALIASES`):

    - ``channels.layers.InMemoryChannelLayer`` ->
      ``achannels.layers.InMemoryChannelLayer``
    - ``channels_redis.core.RedisChannelLayer`` ->
      ``achannels.layers.redis.RedisChannelLayer``
    - ``channels_redis.pubsub.RedisPubSubChannelLayer`` ->
      ``achannels.layers.redis.RedisPubSubChannelLayer``

    Built layers are forgotten when Django's ``CHANNEL_LAYERS`` setting
    changes (``override_settings``) or :meth:`configure` is called.
    """

    def __init__(self) -> None:
        #: Built layers by alias.
        self.backends: dict[str, Any] = {}
        self._config: dict[str, Mapping[str, Any]] | None = None
        self._watching_django = False

    # Configuration

    def configure(self, config: Mapping[str, Mapping[str, Any]] | None) -> None:
        """Use ``config`` (``{alias: {"BACKEND": ..., "CONFIG": {...}}}``) from
        now on, instead of Django's ``CHANNEL_LAYERS``, and forget the layers
        built so far; ``None`` goes back to Django's setting. Raises
        :class:`~achannels.exceptions.InvalidChannelLayerError` if ``config``
        is not a mapping of mappings."""
        if config is None:
            self._config = None
            self.backends = {}
            return
        if not isinstance(config, Mapping):
            raise InvalidChannelLayerError(
                "channel_layers.configure() takes a dict of aliases such as "
                '{"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}'
                f", got {type(config).__name__}"
            )
        for alias, entry in config.items():
            if not isinstance(entry, Mapping):
                raise InvalidChannelLayerError(
                    f"Channel layer {alias!r} must be configured with a dict "
                    f'such as {{"BACKEND": "achannels.layers.InMemoryChannelLayer"}}'
                    f", got {type(entry).__name__}"
                )
        self._config = dict(config)
        self.backends = {}

    @property
    def configs(self) -> Mapping[str, Mapping[str, Any]]:
        """The configuration in effect: what :meth:`configure` was given, else
        Django's ``CHANNEL_LAYERS``, else nothing."""
        if self._config is not None:
            return self._config
        layers = _django_layers(self)
        return {} if layers is None else layers

    def _watch_django_settings(self) -> None:
        if self._watching_django:
            return
        from django.core.signals import setting_changed

        setting_changed.connect(self._reset_backends, weak=False)
        self._watching_django = True

    def _reset_backends(self, setting: str, **kwargs: Any) -> None:
        """Forget built layers when ``CHANNEL_LAYERS`` changes (a Django
        ``setting_changed`` receiver)."""
        if setting == "CHANNEL_LAYERS":
            self.backends = {}

    # Construction

    def _entry(self, alias: str) -> Mapping[str, Any]:
        configs = self.configs
        try:
            entry = configs[alias]
        except KeyError:
            known = ", ".join(repr(name) for name in configs) or "none"
            raise _MissingAliasError(
                f"No channel layer is configured for alias {alias!r} (configured: "
                f"{known}); add it to CHANNEL_LAYERS or channel_layers.configure()"
            ) from None
        if not isinstance(entry, Mapping):
            raise InvalidChannelLayerError(
                f"Channel layer {alias!r} must be configured with a dict, got "
                f"{type(entry).__name__}"
            )
        return entry

    def make_backend(self, name: str) -> Any:
        """Build and return a new layer for alias ``name`` from its
        ``CONFIG``. Raises :class:`~achannels.exceptions.InvalidChannelLayerError`
        when the alias, its ``BACKEND`` or its options are unusable (a missing
        alias is also a :class:`KeyError`)."""
        config = self._entry(name).get("CONFIG", {})
        return self._make_backend(name, config)

    def make_test_backend(self, name: str) -> Any:
        """Build and return a new layer for alias ``name`` from its
        ``TEST_CONFIG``. Raises :class:`~achannels.exceptions.InvalidChannelLayerError`
        when there is no ``TEST_CONFIG`` or the layer cannot be built."""
        entry = self._entry(name)
        if "TEST_CONFIG" not in entry:
            raise InvalidChannelLayerError(
                f"No TEST_CONFIG specified for channel layer {name!r}"
            )
        return self._make_backend(name, entry["TEST_CONFIG"])

    def _make_backend(self, name: str, config: Any) -> Any:
        entry = self._entry(name)
        if "ROUTING" in entry:
            raise InvalidChannelLayerError(
                f"Channel layer {name!r} has a ROUTING key, which Channels 1 used; "
                "remove it (routing lives in the ASGI application now)"
            )
        path = entry.get("BACKEND")
        if not path:
            raise InvalidChannelLayerError(
                f"No BACKEND specified for channel layer {name!r}; use e.g. "
                '"achannels.layers.InMemoryChannelLayer"'
            )
        backend = self._import_backend(name, path)
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise InvalidChannelLayerError(
                f"CONFIG of channel layer {name!r} must be a dict of options, got "
                f"{type(config).__name__}"
            )
        try:
            return backend(**config)
        except TypeError as exc:
            # Unknown options and options of the wrong type both land here.
            raise InvalidChannelLayerError(
                f"Bad CONFIG for channel layer {name!r} ({path}): {exc}; "
                f"given options: {', '.join(map(str, config)) or 'none'}"
            ) from exc

    def _import_backend(self, name: str, path: Any) -> Any:
        if not isinstance(path, str):
            raise InvalidChannelLayerError(
                f"BACKEND of channel layer {name!r} must be a dotted path string, "
                f"got {type(path).__name__}"
            )
        target = BACKEND_ALIASES.get(path, path)
        module_path, _, attribute = target.rpartition(".")
        try:
            if not module_path:
                raise ImportError(f"{target!r} is not a dotted path")
            module = importlib.import_module(module_path)
            return getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            shown = path if target == path else f"{path!r} (as {target!r})"
            raise InvalidChannelLayerError(
                f"Cannot import BACKEND {shown} specified for channel layer "
                f"{name!r}: {exc}"
            ) from exc

    # Access

    def __getitem__(self, key: str) -> Any:
        try:
            return self.backends[key]
        except KeyError:
            layer = self.backends[key] = self.make_backend(key)
            return layer

    def __contains__(self, key: object) -> bool:
        return key in self.configs

    def set(self, key: str, layer: Any) -> Any:
        """Use ``layer`` for alias ``key`` from now on and return the layer it
        replaces (``None`` if none was built), e.g. to swap a layer in tests."""
        old = self.backends.get(key)
        self.backends[key] = layer
        return old

    async def aclose(self) -> None:
        """Close every built layer (each layer's ``close()``) and forget them,
        so the next lookup builds fresh ones. A layer whose ``close()`` fails
        is logged and does not stop the others. The ASGI lifespan shutdown
        calls this."""
        backends, self.backends = self.backends, {}
        for alias, layer in backends.items():
            close = getattr(layer, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                logger.exception("Closing channel layer %r failed", alias)


#: The process-wide manager (``achannels.layers.channel_layers``).
channel_layers = ChannelLayerManager()


# Any: a backend is whatever class the configuration names; callers use the
# extensions of the backend they configured.
def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> Any:
    """Return the channel layer for ``alias``, or ``None`` if no layer is
    configured for it (Channels' behaviour). A configured layer that cannot
    be built raises :class:`~achannels.exceptions.InvalidChannelLayerError`."""
    try:
        return channel_layers[alias]
    except _MissingAliasError:
        return None
