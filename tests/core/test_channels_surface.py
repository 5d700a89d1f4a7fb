"""Every public name of Channels 4.3.2's modules is importable from the same
achannels module: compared by introspection with the real wheel, installed
in a side environment (tests/support/channels_wheel.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support.channels_wheel import channels_python

SETUP = """
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x",
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                           "NAME": ":memory:"}},
)
django.setup()
"""

# Public names of each channels.* module, and the public members of the
# classes Channels defines, as {module: {name: [members] or None}}.
DUMP = (
    SETUP
    + """
import importlib, inspect, json, pkgutil, channels
surface = {}
for info in pkgutil.walk_packages(channels.__path__, "channels."):
    module = importlib.import_module(info.name)
    names = {}
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        origin = getattr(value, "__module__", None) or ""
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not origin.startswith("channels"):
            continue  # Django, asgiref, stdlib names the module imports
        members = None
        if inspect.isclass(value):
            members = sorted(
                member
                for klass in value.__mro__
                if klass.__module__.startswith("channels")
                for member in vars(klass)
                if not member.startswith("_")
            )
        names[name] = members
    surface[info.name] = names
print(json.dumps(surface))
"""
)

CHECK = (
    SETUP
    + """
import importlib, json, sys
surface = json.loads(sys.stdin.read())
problems = []
for channels_module, names in sorted(surface.items()):
    ours = "a" + channels_module
    try:
        module = importlib.import_module(ours)
    except ImportError as error:
        problems.append(f"{ours}: {error}")
        continue
    for name, members in sorted(names.items()):
        try:
            value = getattr(module, name)
        except AttributeError:
            problems.append(f"{ours}.{name}")
            continue
        for member in members or ():
            if not hasattr(value, member):
                problems.append(f"{ours}.{name}.{member}")
print(json.dumps(problems))
"""
)

# Daphne's pieces of Channels' live server; ours is served by uvicorn.
NOT_OURS = {
    "achannels.testing.live.make_application",
    "achannels.testing.live.set_database_connection",
    "achannels.testing.live.ChannelsLiveServerTestCase.ProtocolServerProcess",
    "achannels.testing.ChannelsLiveServerTestCase.ProtocolServerProcess",
}


def _run(python: str, code: str, stdin: str = "") -> str:
    result = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",  # not the repo: nothing of ours on the side path
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(900)
def test_every_channels_public_name_is_importable_from_achannels() -> None:
    surface = json.loads(_run(str(channels_python()), DUMP))
    assert "channels.consumer" in surface and "channels.utils" in surface
    problems = json.loads(_run(sys.executable, CHECK, json.dumps(surface)))
    assert sorted(set(problems) - NOT_OURS) == []


def test_channels_consumer_module_reexports_resolve_lazily() -> None:
    # No Django import for the core; the names resolve when asked for.
    out = _run(
        sys.executable,
        SETUP
        + """
import json, sys
import achannels
assert "achannels.db" not in sys.modules
from achannels.consumer import await_many_dispatch, database_sync_to_async
from achannels.generic.websocket import aclose_old_connections
import achannels.db
assert database_sync_to_async is achannels.db.database_sync_to_async
print(json.dumps([achannels.routing.__name__, achannels.testing.live.__name__]))
""",
    )
    assert json.loads(out) == ["achannels.routing", "achannels.testing.live"]
