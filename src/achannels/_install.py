"""``install_as_channels()``: make ``import channels`` give achannels.

Code written for Channels (third-party packages, a project's own modules and
tests) then runs on achannels unchanged. The convention is PyMySQL's
``install_as_MySQLdb()``: one call before anything imports ``channels``.

It puts one finder at the front of ``sys.meta_path``. The finder is asked
only when a module is imported for the first time, so it costs nothing per
message and imports an achannels module only when its Channels name is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Sequence
from importlib.machinery import PathFinder

__all__ = [
    "ChannelsAlreadyImportedError",
    "ChannelsInstalledWarning",
    "install_as_channels",
]

#: channels_redis's modules under their names: the two layers, the
#: serializer registry and the host helpers.
REDIS_MODULES = {
    "channels_redis.core": "achannels.layers.redis.core",
    "channels_redis.pubsub": "achannels.layers.redis.pubsub",
    "channels_redis.serializers": "achannels.layers.redis.serializers",
    "channels_redis.utils": "achannels.layers.redis.utils",
}


class ChannelsAlreadyImportedError(RuntimeError):
    """Raised by ``install_as_channels()`` when the real ``channels`` package
    is already imported: its classes would live on next to ours, so
    ``isinstance`` checks and settings strings would mix the two."""


class ChannelsInstalledWarning(UserWarning):
    """Warned (once) by ``install_as_channels()`` when a real ``channels``
    package is installed: it is shadowed from then on in this process, but a
    process that does not make the call still imports it."""


class _AliasLoader(importlib.abc.Loader):
    """Loads ``channels.X`` as the module object ``achannels.X``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder, replaced in exec_module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name
        # once exec_module is done, so the alias becomes the achannels module
        # itself while that module's own __name__ and __spec__ stay untouched.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _PackageLoader(importlib.abc.Loader):
    """Loads ``channels_redis`` as an empty package, as channels_redis's own
    ``__init__`` is: its submodules are imported by name."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = "channels_redis's layers, given by achannels."


class _ChannelsFinder(importlib.abc.MetaPathFinder):
    """Finds ``channels[.X]`` as ``achannels[.X]`` and, when ``redis`` is set,
    ``channels_redis.core`` / ``.pubsub`` / ``.serializers`` / ``.utils`` as
    achannels' Redis modules."""

    def __init__(self, *, redis: bool) -> None:
        self.redis = redis

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "channels" or fullname.startswith("channels."):
            aliased = "a" + fullname
        elif not self.redis or not fullname.startswith("channels_redis"):
            return None
        elif fullname == "channels_redis":
            return importlib.machinery.ModuleSpec(
                fullname, _PackageLoader(), is_package=True
            )
        elif fullname in REDIS_MODULES:
            aliased = REDIS_MODULES[fullname]
        else:
            return None
        found = importlib.util.find_spec(aliased)
        if found is None:
            # No achannels.X: Python then raises "No module named 'channels.X'".
            return None
        return importlib.machinery.ModuleSpec(
            fullname,
            _AliasLoader(aliased),
            is_package=found.submodule_search_locations is not None,
        )


_lock = threading.Lock()
_finder: _ChannelsFinder | None = None
_warned = False


def install_as_channels() -> None:
    """Make ``channels`` and every ``channels.X`` the very module objects
    ``achannels`` and ``achannels.X`` from now on in this process (classes are
    identical, so ``isinstance`` works, and settings strings such as
    ``"channels.layers.InMemoryChannelLayer"`` or ``"channels"`` in
    ``INSTALLED_APPS`` name achannels). Unless the real channels_redis is
    already imported, ``channels_redis.core``, ``.pubsub``, ``.serializers``
    and ``.utils`` become achannels' Redis layer modules too.

    Call it at the top of ``settings.py``, ``manage.py`` and ``asgi.py`` (or
    load the pytest plugin ``achannels.testing.channels_alias``). Calling it
    again, from any thread, does nothing.

    Raises ``ChannelsAlreadyImportedError`` when the real ``channels`` is
    already imported. Warns ``ChannelsInstalledWarning`` the first time when
    a real ``channels`` is merely installed (channels-redis and many
    third-party packages depend on it).
    """
    global _finder, _warned
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            return
        _refuse_real_channels_imported()
        shadowed = None if _warned else PathFinder.find_spec("channels")
        _warned = True
        _finder = _ChannelsFinder(redis="channels_redis" not in sys.modules)
        sys.meta_path.insert(0, _finder)
    if shadowed is not None:
        warnings.warn(
            f"A 'channels' package is installed ({shadowed.origin}); "
            "install_as_channels() shadows it, so 'import channels' gives "
            "achannels in this process. A process that does not call "
            "install_as_channels() still imports the real one. If that is "
            "intended, filter achannels.ChannelsInstalledWarning.",
            ChannelsInstalledWarning,
            stacklevel=2,
        )


def installed() -> bool:
    """Whether ``install_as_channels()`` is in effect in this process."""
    return _finder is not None and _finder in sys.meta_path


def _refuse_real_channels_imported() -> None:
    real = sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == "channels" or name.startswith("channels."))
        and getattr(module, "__name__", None) == name
    )
    if real:
        origin = getattr(sys.modules.get(real[0]), "__file__", None)
        raise ChannelsAlreadyImportedError(
            f"The real Channels is already imported ({real[0]!r} from {origin}, "
            f"{len(real)} module(s) in all), so install_as_channels() cannot "
            "make 'channels' mean achannels. Call "
            "it before anything imports channels: first in settings.py, "
            "manage.py and asgi.py, or with pytest -p "
            "achannels.testing.channels_alias."
        )
