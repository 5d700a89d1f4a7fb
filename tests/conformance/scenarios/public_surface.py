"""Every public name of Channels 4.3.2's modules is importable from the same
module, and its callables accept the parameters Channels' do (by name).

Public names: not underscored, not modules, and Channels' or asgiref's own
objects or plain constants (``channels.routing.settings`` and the like, bare
re-exports of Django or the standard library, are left out). The layer
classes' underscored methods count too: test fixtures wrap them.
"""

import importlib
import inspect

from _transcript import Transcript, configure_django

configure_django()

MODULES = [
    "channels",
    "channels.apps",
    "channels.auth",
    "channels.consumer",
    "channels.db",
    "channels.exceptions",
    "channels.generic.http",
    "channels.generic.websocket",
    "channels.layers",
    "channels.management.commands.runworker",
    "channels.middleware",
    "channels.routing",
    "channels.security.websocket",
    "channels.sessions",
    "channels.testing",
    "channels.testing.http",
    "channels.testing.websocket",
    "channels.utils",
    "channels.worker",
]
PRIVATE_TOO = {"BaseChannelLayer", "InMemoryChannelLayer"}


def owner(value) -> str:
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__module__ or ""
    return type(value).__module__


def public(module) -> dict:
    names = {}
    # __all__ too: a module may resolve some of its names lazily (PEP 562).
    for name in {*vars(module), *getattr(module, "__all__", ())}:
        value = getattr(module, name)
        if name.startswith("_") or inspect.ismodule(value):
            continue
        root = owner(value).partition(".")[0]
        if root in {"channels", "achannels", "asgiref"} or isinstance(
            value, (str, int)
        ):
            names[name] = value
    return names


def parameters(function) -> list | None:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def members(cls) -> dict:
    private = cls.__name__ in PRIVATE_TOO
    found = {}
    for name in dir(cls):
        if name.startswith("__") or (name.startswith("_") and not private):
            continue
        found[name] = inspect.getattr_static(cls, name, None)
    return found


transcript = Transcript()
for module_name in MODULES:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        transcript.raised(f"{module_name}", exc)
        continue
    names = public(module)
    transcript.superset(f"{module_name}", names)
    for name, value in sorted(names.items()):
        where = f"{module_name}.{name}"
        if callable(value) and not inspect.isclass(value):
            params = parameters(value)
            if params is not None:
                transcript.superset(f"{where}()", params)
        if not inspect.isclass(value) or owner(value).startswith("asgiref"):
            continue
        if issubclass(value, BaseException):
            transcript.superset(f"{where} bases", [c.__name__ for c in value.__mro__])
            continue
        attributes = members(value)
        transcript.superset(f"{where} members", attributes)
        for attribute, member in sorted(attributes.items()):
            function = getattr(member, "__func__", member)
            if inspect.isfunction(function):
                params = parameters(function)
                if params is not None:
                    transcript.superset(f"{where}.{attribute}()", params)
transcript.dump()
