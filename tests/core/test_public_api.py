"""The public surface promised in DESIGN.md, and what importing it pulls in."""

from __future__ import annotations

import importlib

import pytest

from tests.support.subprocesses import run_python

# module -> names, as the DESIGN.md public API table lists them.
PUBLIC_API: dict[str, set[str]] = {
    "achannels": {
        "__version__",
        "DEFAULT_CHANNEL_LAYER",
        "install_as_channels",
        "ChannelsAlreadyImportedError",
        "ChannelsInstalledWarning",
    },
    "achannels.consumer": {"AsyncConsumer", "SyncConsumer", "get_handler_name"},
    "achannels.generic.websocket": {
        "WebsocketConsumer",
        "AsyncWebsocketConsumer",
        "JsonWebsocketConsumer",
        "AsyncJsonWebsocketConsumer",
    },
    "achannels.generic.http": {"AsyncHttpConsumer"},
    "achannels.generic.sse": {
        "AsyncEventStreamConsumer",
        "EventHistory",
        "InMemoryEventHistory",
        "ServerSentEvent",
    },
    "achannels.routing": {
        "ProtocolTypeRouter",
        "URLRouter",
        "ChannelNameRouter",
        "get_default_application",
        "path",
        "re_path",
    },
    "achannels.middleware": {"BaseMiddleware"},
    "achannels.layers": {
        "BaseChannelLayer",
        "InMemoryChannelLayer",
        "ChannelLayerManager",
        "channel_layers",
        "get_channel_layer",
        "Publisher",
        "publisher",
    },
    "achannels.presence": {"Presence", "PRESENCE_REF"},
    "achannels.layers.redis": {
        "RedisChannelLayer",
        "RedisPubSubChannelLayer",
        "RedisEventHistory",
    },
    "achannels.exceptions": {
        "StopConsumer",
        "AcceptConnection",
        "DenyConnection",
        "ChannelFull",
        "MessageTooLarge",
        "InvalidChannelLayerError",
        "RequestAborted",
        "RequestTimeout",
        "ReceiverGone",
    },
    "achannels.testing": {
        "ApplicationCommunicator",
        "HttpCommunicator",
        "WebsocketCommunicator",
        "ChannelsLiveServerTestCase",
    },
    "achannels.db": {"database_sync_to_async", "aclose_old_connections"},
    "achannels.auth": {
        "AuthMiddleware",
        "AuthMiddlewareStack",
        "get_user",
        "login",
        "logout",
    },
    "achannels.sessions": {
        "CookieMiddleware",
        "SessionMiddleware",
        "SessionMiddlewareStack",
        "InstanceSessionWrapper",
    },
    "achannels.security.websocket": {
        "OriginValidator",
        "AllowedHostsOriginValidator",
        "WebsocketDenier",
    },
    "achannels.worker": {"Worker"},
}

# Modules that must import without Django configured (DESIGN: "Django optional").
CORE_MODULES = [
    "achannels",
    "achannels.consumer",
    "achannels.exceptions",
    "achannels.generic.websocket",
    "achannels.generic.http",
    "achannels.generic.sse",
    "achannels.routing",
    "achannels.middleware",
    "achannels.layers",
    "achannels.layers.memory",
    "achannels.layers.redis",
    "achannels.presence",
    "achannels.testing",
    "achannels.worker",
    "achannels.cli",
]

DJANGO_SETTINGS = """
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x",
    INSTALLED_APPS=[
        "achannels", "django.contrib.auth", "django.contrib.contenttypes",
        "django.contrib.sessions", "django.contrib.staticfiles",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    STATIC_URL="/static/",
)
django.setup()
"""


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_module_exports_the_documented_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(getattr(module, "__all__", ()))
    assert PUBLIC_API[module_name] <= exported, PUBLIC_API[module_name] - exported
    for name in PUBLIC_API[module_name]:
        assert getattr(module, name) is not None


def test_core_modules_import_no_django_daphne_or_twisted() -> None:
    loaded = run_python(
        f"""
        import importlib, json, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        print(json.dumps({{"modules": sorted(sys.modules)}}))
        """
    )["modules"]
    unwanted = [m for m in loaded if m.split(".")[0] in {"django", "daphne", "twisted"}]
    assert unwanted == []


def test_every_module_imports_without_daphne_or_twisted() -> None:
    loaded = run_python(
        DJANGO_SETTINGS
        + """
import importlib, json, pkgutil, sys
import achannels
names = [m.name for m in pkgutil.walk_packages(achannels.__path__, "achannels.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": sorted(sys.modules), "imported": names}))
"""
    )
    assert len(loaded["imported"]) >= len(PUBLIC_API)
    unwanted = [
        m for m in loaded["modules"] if m.split(".")[0] in {"daphne", "twisted"}
    ]
    assert unwanted == []


def test_installed_distribution_requires_no_daphne_twisted_or_django() -> None:
    from importlib.metadata import requires

    runtime = [r for r in requires("achannels") or [] if "extra ==" not in r]
    lowered = " ".join(runtime).lower()
    for package in ("daphne", "twisted", "django", "channels"):
        assert package not in lowered.replace("achannels", ""), runtime
