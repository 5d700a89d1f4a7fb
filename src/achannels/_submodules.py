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

__all__ = ["lazy_submodules"]


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
