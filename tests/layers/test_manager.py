"""ChannelLayerManager, channel_layers and get_channel_layer."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from achannels.exceptions import InvalidChannelLayerError
from achannels.layers import (
    BaseChannelLayer,
    ChannelLayerManager,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)
from tests.support.subprocesses import run_python

IN_MEMORY = {"BACKEND": "achannels.layers.InMemoryChannelLayer"}


@pytest.fixture
def manager() -> ChannelLayerManager:
    manager = ChannelLayerManager()
    manager.configure({})
    return manager


@pytest.fixture
def global_layers() -> Iterator[ChannelLayerManager]:
    """The process-wide manager, restored afterwards."""
    saved_config, saved_backends = channel_layers._config, channel_layers.backends
    yield channel_layers
    channel_layers._config, channel_layers.backends = saved_config, saved_backends


class ClosingLayer(BaseChannelLayer):
    """A layer that records its close() and can be told to fail it."""

    closed: list[str] = []

    def __init__(self, name: str = "x", fail: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.name = name
        self.fail = fail

    async def close(self) -> None:
        ClosingLayer.closed.append(self.name)
        if self.fail:
            raise RuntimeError(f"{self.name} cannot close")


def test_configured_alias_builds_the_backend_once(
    manager: ChannelLayerManager,
) -> None:
    manager.configure(
        {"default": {**IN_MEMORY, "CONFIG": {"expiry": 5, "capacity": 7}}}
    )
    layer = manager["default"]
    assert isinstance(layer, InMemoryChannelLayer)
    assert (layer.expiry, layer.capacity) == (5, 7)
    assert manager["default"] is layer
    assert manager.backends == {"default": layer}
    assert "default" in manager
    assert "other" not in manager


def test_get_channel_layer_uses_the_global_manager(
    global_layers: ChannelLayerManager,
) -> None:
    global_layers.configure({"default": IN_MEMORY, "second": IN_MEMORY})
    layer = get_channel_layer()
    assert isinstance(layer, InMemoryChannelLayer)
    assert get_channel_layer("default") is layer
    assert get_channel_layer("second") is not layer


def test_get_channel_layer_is_none_for_unconfigured_alias(
    global_layers: ChannelLayerManager,
) -> None:
    global_layers.configure({})
    assert get_channel_layer() is None
    global_layers.configure({"default": IN_MEMORY})
    assert get_channel_layer("missing") is None


def test_missing_alias_is_invalid_layer_error_and_key_error(
    manager: ChannelLayerManager,
) -> None:
    manager.configure({"default": IN_MEMORY})
    with pytest.raises(InvalidChannelLayerError) as info:
        manager["missing"]
    assert isinstance(info.value, KeyError)
    assert str(info.value) == (
        "No channel layer is configured for alias 'missing' (configured: "
        "'default'); add it to CHANNEL_LAYERS or channel_layers.configure()"
    )


def test_missing_backend_is_a_clear_error(manager: ChannelLayerManager) -> None:
    manager.configure({"default": {"CONFIG": {}}})
    with pytest.raises(InvalidChannelLayerError, match="No BACKEND specified"):
        manager["default"]


def test_get_channel_layer_raises_for_broken_configuration(
    global_layers: ChannelLayerManager,
) -> None:
    global_layers.configure({"default": {"CONFIG": {}}})
    with pytest.raises(InvalidChannelLayerError, match="No BACKEND"):
        get_channel_layer()


@pytest.mark.parametrize(
    ("backend", "fragment"),
    [
        ("no_such_module.Layer", "Cannot import BACKEND no_such_module.Layer"),
        ("achannels.layers.NoSuchLayer", "has no attribute 'NoSuchLayer'"),
        ("NoDots", "'NoDots' is not a dotted path"),
    ],
)
def test_unimportable_backend_is_a_clear_error(
    manager: ChannelLayerManager, backend: str, fragment: str
) -> None:
    manager.configure({"default": {"BACKEND": backend}})
    with pytest.raises(InvalidChannelLayerError) as info:
        manager["default"]
    assert fragment in str(info.value)
    assert "for channel layer 'default'" in str(info.value)


def test_non_string_backend_is_a_clear_error(manager: ChannelLayerManager) -> None:
    manager.configure({"default": {"BACKEND": InMemoryChannelLayer}})
    with pytest.raises(InvalidChannelLayerError, match="must be a dotted path"):
        manager["default"]


def test_bad_config_options_are_a_clear_error(manager: ChannelLayerManager) -> None:
    manager.configure({"default": {**IN_MEMORY, "CONFIG": {"hosts": ["x"]}}})
    with pytest.raises(InvalidChannelLayerError) as info:
        manager["default"]
    message = str(info.value)
    assert message.startswith("Bad CONFIG for channel layer 'default'")
    assert "unexpected option(s) hosts" in message
    assert "given options: hosts" in message


def test_bad_config_value_is_a_clear_error(manager: ChannelLayerManager) -> None:
    manager.configure(
        {"default": {**IN_MEMORY, "CONFIG": {"channel_capacity": {"a": 0}}}}
    )
    with pytest.raises(InvalidChannelLayerError, match="use a positive int"):
        manager["default"]


def test_config_must_be_a_dict(manager: ChannelLayerManager) -> None:
    manager.configure({"default": {**IN_MEMORY, "CONFIG": ["expiry"]}})
    with pytest.raises(InvalidChannelLayerError, match="must be a dict of options"):
        manager["default"]


def test_configure_rejects_non_mappings(manager: ChannelLayerManager) -> None:
    with pytest.raises(InvalidChannelLayerError, match="dict of aliases"):
        manager.configure(["default"])  # type: ignore[arg-type]
    with pytest.raises(InvalidChannelLayerError, match="'default' must be configured"):
        manager.configure({"default": "achannels.layers.InMemoryChannelLayer"})  # type: ignore[dict-item]


def test_channels_1_routing_key_is_rejected(manager: ChannelLayerManager) -> None:
    manager.configure({"default": {**IN_MEMORY, "ROUTING": "x.routes"}})
    with pytest.raises(InvalidChannelLayerError, match="ROUTING key"):
        manager["default"]


def test_channels_backend_path_builds_achannels_layer(
    manager: ChannelLayerManager,
) -> None:
    manager.configure(
        {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 3},
            }
        }
    )
    layer = manager["default"]
    assert type(layer) is InMemoryChannelLayer
    assert layer.capacity == 3


@pytest.mark.parametrize(
    ("channels_path", "class_name"),
    [
        ("channels_redis.core.RedisChannelLayer", "RedisChannelLayer"),
        ("channels_redis.pubsub.RedisPubSubChannelLayer", "RedisPubSubChannelLayer"),
    ],
)
def test_channels_redis_paths_build_achannels_redis_layers(
    manager: ChannelLayerManager, channels_path: str, class_name: str
) -> None:
    redis_layers = pytest.importorskip("achannels.layers.redis")
    if not hasattr(redis_layers, class_name):
        pytest.skip(f"achannels.layers.redis has no {class_name} yet")
    manager.configure({"default": {"BACKEND": channels_path}})
    layer = manager["default"]
    assert type(layer) is getattr(redis_layers, class_name)


def test_make_backend_builds_a_new_layer_each_time(
    manager: ChannelLayerManager,
) -> None:
    manager.configure({"default": IN_MEMORY})
    first = manager.make_backend("default")
    assert manager.make_backend("default") is not first
    assert manager.backends == {}


def test_make_test_backend_uses_test_config(manager: ChannelLayerManager) -> None:
    manager.configure(
        {
            "default": {
                **IN_MEMORY,
                "CONFIG": {"capacity": 5},
                "TEST_CONFIG": {"capacity": 9},
            },
            "plain": IN_MEMORY,
        }
    )
    assert manager.make_test_backend("default").capacity == 9
    with pytest.raises(InvalidChannelLayerError, match="No TEST_CONFIG specified"):
        manager.make_test_backend("plain")


def test_set_swaps_the_layer_and_returns_the_old_one(
    manager: ChannelLayerManager,
) -> None:
    manager.configure({"default": IN_MEMORY})
    replacement = InMemoryChannelLayer()
    assert manager.set("default", replacement) is None
    assert manager["default"] is replacement
    newer = InMemoryChannelLayer()
    assert manager.set("default", newer) is replacement
    assert manager["default"] is newer


def test_set_works_for_unconfigured_alias(manager: ChannelLayerManager) -> None:
    layer = InMemoryChannelLayer()
    manager.set("custom", layer)
    assert manager["custom"] is layer


def test_configure_forgets_built_layers(manager: ChannelLayerManager) -> None:
    manager.configure({"default": IN_MEMORY})
    first = manager["default"]
    manager.configure({"default": IN_MEMORY})
    assert manager["default"] is not first


async def test_aclose_closes_every_layer_despite_failures(
    manager: ChannelLayerManager, caplog: pytest.LogCaptureFixture
) -> None:
    backend = f"{__name__}.ClosingLayer"
    manager.configure(
        {
            "a": {"BACKEND": backend, "CONFIG": {"name": "a"}},
            "b": {"BACKEND": backend, "CONFIG": {"name": "b", "fail": True}},
            "c": {"BACKEND": backend, "CONFIG": {"name": "c"}},
        }
    )
    ClosingLayer.closed = []
    built = [manager[alias] for alias in ("a", "b", "c")]
    manager.set("memory", InMemoryChannelLayer())
    with caplog.at_level(logging.ERROR, "achannels.layers"):
        await manager.aclose()
    assert ClosingLayer.closed == ["a", "b", "c"]
    assert "Closing channel layer 'b' failed" in caplog.text
    assert "b cannot close" in caplog.text
    # Closed layers are forgotten: the next lookup builds a fresh one.
    assert manager.backends == {}
    assert manager["a"] is not built[0]


async def test_aclose_with_nothing_built_is_a_no_op(
    manager: ChannelLayerManager,
) -> None:
    await manager.aclose()


# Django integration runs in subprocesses: configuring Django settings is
# process-wide and the suite runs other tests in the same worker.


def test_django_channel_layers_setting_is_used() -> None:
    result = run_python(
        """
        import json
        from django.conf import settings
        settings.configure(CHANNEL_LAYERS={"default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 11},
            "TEST_CONFIG": {"capacity": 12},
        }})
        from achannels.layers import channel_layers, get_channel_layer
        layer = get_channel_layer()
        print(json.dumps({
            "type": type(layer).__module__ + "." + type(layer).__name__,
            "capacity": layer.capacity,
            "test_capacity": channel_layers.make_test_backend("default").capacity,
            "missing": get_channel_layer("other"),
        }))
        """
    )
    assert result == {
        "type": "achannels.layers.memory.InMemoryChannelLayer",
        "capacity": 11,
        "test_capacity": 12,
        "missing": None,
    }


def test_django_setting_change_resets_built_layers() -> None:
    result = run_python(
        """
        import json
        from django.conf import settings
        settings.configure(CHANNEL_LAYERS={"default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1},
        }})
        from django.test.utils import override_settings
        from achannels.layers import get_channel_layer
        before = get_channel_layer()
        with override_settings(CHANNEL_LAYERS={"default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 2},
        }}):
            inside = get_channel_layer()
        after = get_channel_layer()
        with override_settings(CHANNEL_LAYERS={}):
            empty = get_channel_layer()
        print(json.dumps({
            "capacities": [before.capacity, inside.capacity, after.capacity],
            "rebuilt": after is not before,
            "empty": empty,
        }))
        """
    )
    assert result == {"capacities": [1, 2, 1], "rebuilt": True, "empty": None}


def test_django_settings_module_env_is_read(tmp_path: Any) -> None:
    (tmp_path / "layer_settings.py").write_text(
        "SECRET_KEY = 'x'\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': "
        "'achannels.layers.InMemoryChannelLayer', 'CONFIG': {'expiry': 3}}}\n"
    )
    result = run_python(
        """
        import json, sys
        from achannels.layers import get_channel_layer
        print(json.dumps({"expiry": get_channel_layer().expiry}))
        """,
        DJANGO_SETTINGS_MODULE="layer_settings",
        PYTHONPATH=str(tmp_path),
    )
    assert result == {"expiry": 3}


def test_configure_wins_over_django_settings() -> None:
    result = run_python(
        """
        import json
        from django.conf import settings
        settings.configure(CHANNEL_LAYERS={"default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1},
        }})
        from achannels.layers import channel_layers, get_channel_layer
        channel_layers.configure({"default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 2},
        }})
        explicit = get_channel_layer().capacity
        channel_layers.configure(None)
        print(json.dumps([explicit, get_channel_layer().capacity]))
        """
    )
    assert result == [2, 1]


def test_django_without_channel_layers_setting_has_no_layer() -> None:
    result = run_python(
        """
        import json
        from django.conf import settings
        settings.configure()
        from achannels.layers import get_channel_layer
        print(json.dumps(get_channel_layer()))
        """
    )
    assert result is None


def test_layers_without_django_import_no_django() -> None:
    env = {key: value for key, value in os.environ.items()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import asyncio, json, sys
                from achannels.layers import channel_layers, get_channel_layer
                missing = get_channel_layer()
                channel_layers.configure({"default": {
                    "BACKEND": "channels.layers.InMemoryChannelLayer"}})
                layer = get_channel_layer()

                async def main():
                    await layer.send("a", {"type": "m"})
                    await layer.receive("a")
                    await channel_layers.aclose()

                asyncio.run(main())
                print(json.dumps({
                    "missing": missing,
                    "django": sorted(m for m in sys.modules if m.split(".")[0]
                                     in ("django", "channels")),
                }))
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "missing": None,
        "django": [],
    }
