"""The Django app: ``INSTALLED_APPS = ["achannels", ...]``.

Installing the app brings the ``runserver`` (uvicorn, WebSockets,
autoreload) and ``runworker`` management commands, and system checks that
explain a setup where they would not work as expected.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks

__all__ = ["AchannelsConfig", "ChannelsConfig", "check_setup"]


class AchannelsConfig(AppConfig):
    """App config for ``"achannels"`` in ``INSTALLED_APPS`` (label
    ``achannels``, so it can sit next to ``channels`` during a migration)."""

    name = "achannels"
    label = "achannels"
    verbose_name = "achannels"
    # Chosen for "achannels" in INSTALLED_APPS, not ChannelsConfig below.
    default = True

    def ready(self) -> None:
        checks.register(check_setup)


class ChannelsConfig(AchannelsConfig):
    """Channels' name for the app config, for code and settings that name it
    (``"achannels.apps.ChannelsConfig"`` in ``INSTALLED_APPS``); the same
    app as :class:`AchannelsConfig`."""

    default = False


def _position(app_name: str) -> int | None:
    for index, config in enumerate(apps.get_app_configs()):
        if config.name == app_name:
            return index
    return None


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about settings that make ``runserver`` or ``runworker`` not ours
    or not work: ``ASGI_APPLICATION`` missing (W001), ``achannels`` listed
    after ``django.contrib.staticfiles`` (W002), or ``daphne`` (W003) or
    ``channels`` (W004) listed in ``INSTALLED_APPS``, or no channel layer
    for consumers that use ``self.channel_layer`` (W005)."""
    messages: list[checks.CheckMessage] = []
    from .layers import channel_layers

    if getattr(settings, "ASGI_APPLICATION", None) and not channel_layers.configs:
        messages.append(
            checks.Warning(
                "CHANNEL_LAYERS is not set, so consumers have no channel layer: "
                "self.channel_layer is None and groups cannot be used.",
                hint="Add CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'achannels.layers.InMemoryChannelLayer'}} (one process) or a "
                "Redis layer (several); silence achannels.W005 if no consumer "
                "uses a layer.",
                id="achannels.W005",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            checks.Warning(
                "ASGI_APPLICATION is not set, so runserver and runworker have "
                "no application to run.",
                hint="Set ASGI_APPLICATION = 'myproject.asgi.application' (the "
                "ProtocolTypeRouter in your asgi.py).",
                id="achannels.W001",
            )
        )
    ours = _position("achannels")
    if ours is None:
        return messages
    staticfiles = _position("django.contrib.staticfiles")
    if staticfiles is not None and staticfiles < ours:
        messages.append(
            checks.Warning(
                "'achannels' comes after 'django.contrib.staticfiles' in "
                "INSTALLED_APPS, so runserver is Django's WSGI server, which "
                "serves no WebSockets.",
                hint="Move 'achannels' above 'django.contrib.staticfiles' (first "
                "is simplest).",
                id="achannels.W002",
            )
        )
    for app_name, command, check_id in (
        ("daphne", "runserver", "achannels.W003"),
        ("channels", "runworker", "achannels.W004"),
    ):
        position = _position(app_name)
        if position is None:
            continue
        shadowed = f" and its {command} replaces ours" if position < ours else ""
        messages.append(
            checks.Warning(
                f"'{app_name}' is in INSTALLED_APPS next to 'achannels'{shadowed}.",
                hint=f"Remove '{app_name}' from INSTALLED_APPS: achannels replaces it.",
                id=check_id,
            )
        )
    return messages
