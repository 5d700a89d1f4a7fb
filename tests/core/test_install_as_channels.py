"""``install_as_channels()``: ``channels`` and ``channels_redis`` names give
achannels' modules, lazily, once, from any thread.

Every check runs in a fresh interpreter: the alias changes ``sys.modules`` for
good, and this process must keep importing the real channels_redis (and so the
real Channels) for the interop tests. The real ``channels`` package is
installed in the dev environment (channels-redis depends on it), so these
checks also prove the alias shadows an installed Channels.
"""

from __future__ import annotations

from tests.support.subprocesses import run_python

# The installed-Channels warning is expected here; tests that count it record it.
INSTALL = """
import warnings
import achannels
with warnings.catch_warnings():
    warnings.simplefilter("ignore", achannels.ChannelsInstalledWarning)
    achannels.install_as_channels()
"""


def test_channels_modules_are_the_achannels_module_objects() -> None:
    result = run_python(
        INSTALL
        + """
import importlib, json, sys
import channels
import channels.layers
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
import achannels.generic.websocket, achannels.layers, achannels.testing
pairs = [(name, "a" + name) for name in sys.modules if name.startswith("channels")]
print(json.dumps({
    "identical": [sys.modules[alias] is sys.modules[real] for alias, real in pairs],
    "aliases": sorted(alias for alias, _ in pairs),
    "package": channels is achannels,
    "consumer": AsyncWebsocketConsumer
        is achannels.generic.websocket.AsyncWebsocketConsumer,
    "communicator": WebsocketCommunicator is achannels.testing.WebsocketCommunicator,
    "spec": [achannels.__spec__.name, achannels.layers.__name__],
    "by_string": importlib.import_module("channels.layers").InMemoryChannelLayer
        is achannels.layers.InMemoryChannelLayer,
}))
"""
    )
    assert result["aliases"] == [
        "channels",
        "channels.generic",
        "channels.generic.websocket",
        "channels.layers",
        "channels.testing",
    ]
    assert all(result["identical"])
    assert result["package"] and result["consumer"] and result["communicator"]
    assert result["spec"] == ["achannels", "achannels.layers"]
    assert result["by_string"]


def test_install_imports_nothing_until_a_channels_name_is_imported() -> None:
    result = run_python(
        """
import json, sys, warnings
import achannels
warnings.simplefilter("ignore", achannels.ChannelsInstalledWarning)
before = set(sys.modules)
achannels.install_as_channels()
after_install = set(sys.modules) - before
import channels.routing
print(json.dumps({
    "after_install": sorted(after_install),
    "redis_loaded": "achannels.layers.redis" in sys.modules,
    "routing": sorted(
        n for n in set(sys.modules) - before if n.startswith("achannels")),
}))
"""
    )
    assert result["after_install"] == []
    assert not result["redis_loaded"]
    assert "achannels.routing" in result["routing"]
    assert "achannels.generic.websocket" not in result["routing"]


def test_missing_channels_module_fails_under_its_channels_name() -> None:
    result = run_python(
        INSTALL
        + """
import importlib.util, json
errors = []
for name in ("channels.nonexistent", "channels.layers.nonexistent",
             "channels_redis.nonexistent"):
    try:
        __import__(name)
    except ModuleNotFoundError as exc:
        errors.append([exc.name, str(exc)])
print(json.dumps({"errors": errors,
                  "spec": importlib.util.find_spec("channels.nonexistent")}))
"""
    )
    assert result["errors"] == [
        ["channels.nonexistent", "No module named 'channels.nonexistent'"],
        [
            "channels.layers.nonexistent",
            "No module named 'channels.layers.nonexistent'",
        ],
        ["channels_redis.nonexistent", "No module named 'channels_redis.nonexistent'"],
    ]
    assert result["spec"] is None


def test_channels_redis_backend_strings_build_achannels_redis_layers() -> None:
    result = run_python(
        INSTALL
        + """
import json
import channels_redis.core, channels_redis.pubsub
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from channels.layers import channel_layers
channel_layers.configure({
    "core": {"BACKEND": "channels_redis.core.RedisChannelLayer",
             "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}},
    "pubsub": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
               "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}},
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
})
print(json.dumps({
    "core": channels_redis.core.RedisChannelLayer is RedisChannelLayer,
    "pubsub": channels_redis.pubsub.RedisPubSubChannelLayer is RedisPubSubChannelLayer,
    "built": [type(channel_layers[alias]).__module__
              for alias in ("core", "pubsub", "memory")],
}))
"""
    )
    assert result["core"] and result["pubsub"]
    assert result["built"] == [
        "achannels.layers.redis.core",
        "achannels.layers.redis.pubsub",
        "achannels.layers.memory",
    ]


def test_channels_redis_serializers_and_utils_are_achannels_modules() -> None:
    result = run_python(
        INSTALL
        + """
import json
from channels_redis.serializers import (BaseMessageSerializer, JSONSerializer,
    MsgPackSerializer, SerializerDoesNotExist, SerializersRegistry, registry)
from channels_redis.utils import _close_redis, _consistent_hash, decode_hosts
import achannels.layers.redis.serializers as ours
print(json.dumps({
    "same": registry is ours.registry
        and BaseMessageSerializer is ours.BaseMessageSerializer,
    "formats": [type(registry.get_serializer(f)).__name__ for f in ("msgpack", "json")],
    "hash": [_consistent_hash("group", 4), _consistent_hash(b"x", 1)],
    "hosts": decode_hosts([("h", 1)]),
}))
"""
    )
    assert result["same"]
    assert result["formats"] == ["MsgPackSerializer", "JSONSerializer"]
    # binascii.crc32(b"group") & 0xFFF is 1221: shard 1 of 4 on channels_redis' ring.
    assert result["hash"] == [1, 0]
    assert result["hosts"][0]["host"] == "h" and result["hosts"][0]["port"] == 1


def test_real_channels_redis_imported_first_is_left_alone() -> None:
    result = run_python(
        """
import json, warnings
import channels_redis
import achannels
from achannels.layers import BaseChannelLayer
warnings.simplefilter("ignore", achannels.ChannelsInstalledWarning)
achannels.install_as_channels()
import channels_redis.core
print(json.dumps({
    "core": channels_redis.core.__name__,
    "file": channels_redis.core.__file__,
    "on_our_base": issubclass(channels_redis.core.RedisChannelLayer, BaseChannelLayer),
}))
"""
    )
    assert result["core"] == "channels_redis.core"
    assert "achannels" not in result["file"]
    # Its `from channels.layers import BaseChannelLayer` found ours.
    assert result["on_our_base"]


def test_refuses_when_the_real_channels_is_already_imported() -> None:
    result = run_python(
        """
import json, sys
import channels.layers
import achannels
try:
    achannels.install_as_channels()
except achannels.ChannelsAlreadyImportedError as exc:
    error = [str(exc), isinstance(exc, RuntimeError)]
import channels.consumer
print(json.dumps({"error": error, "still_real": channels.consumer.__name__}))
"""
    )
    message, is_runtime_error = result["error"]
    assert is_runtime_error
    assert "The real Channels is already imported ('channels' from " in message
    assert "site-packages/channels/__init__.py, 3 module(s) in all)" in message
    assert "Call it before anything imports channels" in message
    assert result["still_real"] == "channels.consumer"


def test_warns_once_that_an_installed_channels_is_shadowed() -> None:
    result = run_python(
        """
import json, warnings
import achannels
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    achannels.install_as_channels()
    achannels.install_as_channels()
print(json.dumps([[w.category.__name__, str(w.message), w.filename] for w in caught]))
"""
    )
    assert len(result) == 1, result
    category, message, filename = result[0]
    assert category == "ChannelsInstalledWarning"
    assert "site-packages/channels/__init__.py" in message
    assert "'import channels' gives achannels" in message
    assert filename == "<string>"  # points at the caller


def test_install_again_after_meta_path_was_reset_restores_the_alias() -> None:
    result = run_python(
        """
import json, sys, warnings
import achannels
from achannels._install import _ChannelsFinder
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    achannels.install_as_channels()
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ChannelsFinder)]
    achannels.install_as_channels()
import channels
print(json.dumps({"warnings": len(caught), "name": channels.__name__}))
"""
    )
    assert result == {"warnings": 1, "name": "achannels"}


def test_no_warning_when_no_channels_is_installed() -> None:
    result = run_python(
        """
import json, os, sys, warnings
import achannels
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p, "channels"))]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    achannels.install_as_channels()
import channels
print(json.dumps({"warnings": len(caught), "name": channels.__name__}))
"""
    )
    assert result == {"warnings": 0, "name": "achannels"}


def test_concurrent_installs_and_imports_agree_on_one_finder() -> None:
    result = run_python(
        """
import importlib, json, sys, threading, warnings
import achannels
from achannels._install import _ChannelsFinder
NAMES = ["channels.layers", "channels.routing", "channels.generic.websocket",
         "channels.testing", "channels.consumer", "channels.exceptions"]
barrier = threading.Barrier(12)
seen = []
def work(index):
    barrier.wait(timeout=10)
    achannels.install_as_channels()
    name = NAMES[index % len(NAMES)]
    seen.append(importlib.import_module(name) is importlib.import_module("a" + name))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
print(json.dumps({
    "seen": seen,
    "finders": sum(isinstance(f, _ChannelsFinder) for f in sys.meta_path),
    "warnings": len(caught),
}))
"""
    )
    assert result == {"seen": [True] * 12, "finders": 1, "warnings": 1}


def test_channels_in_installed_apps_is_the_achannels_app() -> None:
    result = run_python(
        INSTALL
        + """
import json
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x",
    INSTALLED_APPS=["channels", "django.contrib.auth", "django.contrib.contenttypes"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
)
django.setup()
from django.apps import apps
from django.core import checks
from django.core.management import get_commands, load_command_class
from achannels.apps import AchannelsConfig
from achannels.layers import InMemoryChannelLayer
from channels.layers import get_channel_layer
config = apps.get_app_config("achannels")
commands = get_commands()
print(json.dumps({
    "config": isinstance(config, AchannelsConfig),
    "path": config.path == achannels.__path__[0],
    "commands": {
        name: [commands[name], load_command_class(commands[name], name).__module__]
        for name in ("runserver", "runworker")},
    "checks": [message.id for message in checks.run_checks()],
    "layer": isinstance(get_channel_layer(), InMemoryChannelLayer),
}))
"""
    )
    assert result["config"] and result["path"] and result["layer"]
    assert result["commands"] == {
        "runserver": ["achannels", "achannels.management.commands.runserver"],
        "runworker": ["achannels", "achannels.management.commands.runworker"],
    }
    # The app's ready() ran: its system checks are registered.
    assert "achannels.W001" in result["checks"]
