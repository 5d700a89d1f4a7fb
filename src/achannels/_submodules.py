"""Submodules as package attributes, loaded on first use.

Code written for Channels reaches modules as attributes (``channels.db``
after ``import channels.consumer``; ``channels.routing`` after
``import channels.testing``) because Channels' own imports happened to load
them. achannels' core must not import its Django-only modules at import
time, so its packages load a submodule when it is first asked for instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

__all__ = ["django_db_names", "lazy_submodules"]


def lazy_submodules(
    package: str, path: Iterable[str], fallback: Callable[[str], Any] | None = None
) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` (PEP 562) for ``package`` that imports
    its submodules on first access; other names go to ``fallback`` or raise
    ``AttributeError``."""
    names = {info.name for info in pkgutil.iter_modules(list(path))}

    def __getattr__(name: str) -> Any:
        if name in names:
            module: ModuleType = importlib.import_module(f"{package}.{name}")
            return module
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def django_db_names(module: str) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that gives ``aclose_old_connections``
    and ``database_sync_to_async`` from :mod:`achannels.db` on first use:
    Channels' consumer modules re-export them, and importing them eagerly
    would import Django into the core."""

    def __getattr__(name: str) -> Any:
        if name in ("aclose_old_connections", "database_sync_to_async"):
            return getattr(importlib.import_module("achannels.db"), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
