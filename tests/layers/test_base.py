"""BaseChannelLayer: name and message rules, capacities, the abstract API."""

from __future__ import annotations

import re

import pytest

from achannels.layers import BaseChannelLayer


@pytest.fixture
def layer() -> BaseChannelLayer:
    return BaseChannelLayer()


GOOD_CHANNELS = [
    "a",
    "http.request",
    "websocket.send-1_x",
    "specific.inmemory!",
    "specific..inmemory!AbCdEf",
    "specific.abc!def-1_2.3",
    "x" * 99,
]


@pytest.mark.parametrize("name", GOOD_CHANNELS)
def test_valid_channel_names_pass(layer: BaseChannelLayer, name: str) -> None:
    assert layer.require_valid_channel_name(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "",
        "!",
        "!abc",
        "a!b!c",
        "a*",
        "*",
        "a b",
        "abc\n",
        "a\nb",
        "caf\u00e9",
        "a!\u00e9",
        "a!\u0661",  # Arabic-Indic digit: \d without re.ASCII would allow it
        "a/b",
        "a:b",
        "a!b*",
    ],
)
def test_invalid_channel_names_say_what_is_allowed(
    layer: BaseChannelLayer, name: str
) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_channel_name(name)
    message = str(info.value)
    assert message.startswith(layer.invalid_name_error.format("Channel"))
    assert f"Invalid channel name {name!r}" in message
    assert "ASCII letters, digits, '-', '_' or '.'" in message
    assert "'!'" in message
    assert "fewer than 100 characters" in message


def test_channel_name_of_100_characters_is_too_long(layer: BaseChannelLayer) -> None:
    with pytest.raises(TypeError, match="it has 100 characters, it must have fewer"):
        layer.require_valid_channel_name("x" * 100)


def test_huge_name_is_shortened_in_the_error(layer: BaseChannelLayer) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_channel_name("x" * 100_000)
    assert len(str(info.value)) < 450
    assert "100000 characters" in str(info.value)


@pytest.mark.parametrize("name", [None, 1, b"bytes", ["a"], 1.5])
def test_non_str_channel_name_names_its_type(
    layer: BaseChannelLayer, name: object
) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_channel_name(name)
    assert str(info.value).startswith(layer.invalid_name_error.format("Channel"))
    assert f"Channel name must be a str, got {type(name).__name__}" in str(info.value)


def test_receive_on_specific_name_must_end_at_bang(layer: BaseChannelLayer) -> None:
    assert layer.require_valid_channel_name("specific.abc!", receive=True)
    assert layer.require_valid_channel_name("plain.name", receive=True)
    with pytest.raises(
        TypeError,
        match=r"^Specific channel names in receive\(\) must end at the !: "
        r"got 'a!b', receive on 'a!'$",
    ):
        layer.require_valid_channel_name("a!b", receive=True)
    # Without receive=True the full specific name is a valid target.
    assert layer.require_valid_channel_name("a!b")


@pytest.mark.parametrize("name", ["a", "chat.room-1_x", "g" * 99])
def test_valid_group_names_pass(layer: BaseChannelLayer, name: str) -> None:
    assert layer.require_valid_group_name(name) is True


@pytest.mark.parametrize(
    "name", ["", "a!", "a!b", "a*", "g\n", "r\u00e9sum\u00e9", "a b", "g" * 100]
)
def test_invalid_group_names_raise_type_error(
    layer: BaseChannelLayer, name: str
) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_group_name(name)
    assert str(info.value).startswith(layer.invalid_name_error.format("Group"))
    assert f"Invalid group name {name!r}" in str(info.value)
    assert "fewer than 100" in str(info.value)


def test_group_name_rejects_exact_design_message(layer: BaseChannelLayer) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_group_name("a*")
    assert str(info.value) == (
        "Group name must be a valid unicode string with length < 100 containing "
        "only ASCII alphanumerics, hyphens, underscores, or periods. "
        "Invalid group name 'a*': use ASCII letters, digits, '-', '_' or '.', "
        "fewer than 100 characters"
    )


def test_non_str_group_name_names_its_type(layer: BaseChannelLayer) -> None:
    with pytest.raises(
        TypeError, match=r"periods\. Group name must be a str, got int 5$"
    ):
        layer.require_valid_group_name(5)


def test_valid_channel_names_checks_each_name(layer: BaseChannelLayer) -> None:
    assert layer.valid_channel_names(["a", "b!"], receive=True)
    with pytest.raises(TypeError, match="Invalid channel name 'b c'"):
        layer.valid_channel_names(["a", "b c"])
    with pytest.raises(TypeError, match="non-empty list of channel names, got list"):
        layer.valid_channel_names([])
    with pytest.raises(TypeError, match="non-empty list of channel names, got str"):
        layer.valid_channel_names("abc")


def test_deprecated_aliases_warn_and_validate(layer: BaseChannelLayer) -> None:
    with pytest.warns(DeprecationWarning, match="require_valid_channel_name"):
        assert layer.valid_channel_name("a.b")
    with pytest.warns(DeprecationWarning, match="require_valid_group_name"):
        assert layer.valid_group_name("g")
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(TypeError, match="Invalid group name"),
    ):
        layer.valid_group_name("g!")


def test_match_type_and_length(layer: BaseChannelLayer) -> None:
    assert layer.match_type_and_length("a" * 99)
    assert not layer.match_type_and_length("a" * 100)
    assert not layer.match_type_and_length(b"abc")


def test_non_local_name_cuts_after_the_bang(layer: BaseChannelLayer) -> None:
    assert layer.non_local_name("specific.abc!xyz") == "specific.abc!"
    assert layer.non_local_name("specific.abc!") == "specific.abc!"
    assert layer.non_local_name("http.request") == "http.request"


@pytest.mark.parametrize("message", [[("type", "x")], "x", None, ("a",)])
def test_message_must_be_a_dict(layer: BaseChannelLayer, message: object) -> None:
    with pytest.raises(TypeError) as info:
        layer.require_valid_message(message)
    assert str(info.value).startswith(
        f"Channel layer messages must be dicts, got {type(message).__name__}"
    )


def test_dict_message_is_valid(layer: BaseChannelLayer) -> None:
    assert layer.require_valid_message({"type": "x"})


def test_capacity_globs_are_compiled_and_first_match_wins() -> None:
    layer = BaseChannelLayer(
        capacity=7,
        channel_capacity={"http.request": 200, "websocket.send*": 20, "*": 3},
    )
    assert layer.get_capacity("http.request") == 200
    assert layer.get_capacity("http.request.more") == 3  # globs match whole names
    assert layer.get_capacity("websocket.send!abc") == 20
    assert layer.get_capacity("other") == 3
    assert all(isinstance(p, re.Pattern) for p, _ in layer.channel_capacity)


def test_capacity_regex_keys_are_used_as_given() -> None:
    layer = BaseChannelLayer(
        capacity=7, channel_capacity={re.compile(r"^chat\.\d+$"): 50}
    )
    assert layer.get_capacity("chat.12") == 50
    assert layer.get_capacity("chat.x") == 7


def test_default_capacity_without_patterns() -> None:
    assert BaseChannelLayer().get_capacity("anything") == 100
    assert BaseChannelLayer(capacity=5).get_capacity("anything") == 5


def test_compile_capacities_accepts_its_own_output() -> None:
    layer = BaseChannelLayer(channel_capacity={"a*": 2})
    again = layer.compile_capacities(layer.channel_capacity)
    assert again == layer.channel_capacity


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({1: 5}, "channel_capacity key 1 is a int"),
        ({"a": 0}, "channel_capacity for 'a' is 0: use a positive int"),
        ({"a": "5"}, "channel_capacity for 'a' is '5'"),
        ({"a": True}, "channel_capacity for 'a' is True"),
    ],
)
def test_bad_channel_capacity_is_a_clear_type_error(
    config: dict[object, object], fragment: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(fragment)):
        BaseChannelLayer(channel_capacity=config)  # type: ignore[arg-type]


async def test_abstract_methods_name_the_class(layer: BaseChannelLayer) -> None:
    with pytest.raises(NotImplementedError, match=r"BaseChannelLayer.*send"):
        await layer.send("a", {})
    with pytest.raises(NotImplementedError, match="receive"):
        await layer.receive("a")
    with pytest.raises(NotImplementedError, match="new_channel"):
        await layer.new_channel()
    with pytest.raises(NotImplementedError, match="flush extension"):
        await layer.flush()
    with pytest.raises(NotImplementedError, match="groups extension"):
        await layer.group_add("g", "a")
    with pytest.raises(NotImplementedError, match="groups extension"):
        await layer.group_discard("g", "a")
    with pytest.raises(NotImplementedError, match="groups extension"):
        await layer.group_send("g", {})


async def test_close_is_a_no_op_by_default(layer: BaseChannelLayer) -> None:
    await layer.close()
    await layer.close()


def test_base_layer_has_no_extensions(layer: BaseChannelLayer) -> None:
    assert layer.extensions == []
    assert layer.MAX_NAME_LENGTH == 100
    assert layer.expiry == 60
    assert layer.capacity == 100


# Channels' wording and attributes, which tests and subclasses use


@pytest.mark.parametrize(
    ("kind", "check", "name"),
    [
        ("Group", "require_valid_group_name", "a" * 101),
        ("Group", "require_valid_group_name", "bad name"),
        ("Group", "require_valid_group_name", 42),
        ("Channel", "require_valid_channel_name", "a" * 101),
        ("Channel", "require_valid_channel_name", "bad name"),
    ],
)
def test_name_errors_start_with_channels_invalid_name_error(
    layer: BaseChannelLayer, kind: str, check: str, name: object
) -> None:
    expected = layer.invalid_name_error.format(kind)
    assert expected.startswith(f"{kind} name must be a valid unicode string")
    with pytest.raises(TypeError, match=expected) as raised:
        getattr(layer, check)(name)
    # Our detail follows: what arrived.
    assert len(str(raised.value)) > len(expected)


def test_name_regexes_are_anchored_for_match(layer: BaseChannelLayer) -> None:
    # A subclass written for Channels calls .match(): it must see the whole name.
    assert layer.channel_name_regex.match("abc def") is None
    assert layer.group_name_regex.match("abc def") is None
    assert layer.channel_name_regex.match("specific.abc!def") is not None
    assert layer.group_name_regex.match("room-1\n") is None


def test_valid_channel_names_refusal_is_also_an_assertion_error(
    layer: BaseChannelLayer,
) -> None:
    with pytest.raises(AssertionError):
        layer.valid_channel_names([])
    with pytest.raises(TypeError):
        layer.valid_channel_names("not a list")


def test_non_dict_message_is_also_an_assertion_error(layer: BaseChannelLayer) -> None:
    with pytest.raises(AssertionError):
        layer.require_valid_message("text")
