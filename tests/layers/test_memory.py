"""InMemoryChannelLayer: delivery, capacity, isolation, expiry, races."""

from __future__ import annotations

import asyncio
import datetime
import enum
import gc
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from achannels.exceptions import ChannelFull
from achannels.layers import InMemoryChannelLayer

DEADLINE = 5.0


class Clock:
    """A hand-driven clock for the layer's expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_layer(clock: Clock | None = None, **options: Any) -> InMemoryChannelLayer:
    layer = InMemoryChannelLayer(**options)
    if clock is not None:
        layer._clock = clock
    return layer


@pytest.fixture
def layer(clock: Clock) -> InMemoryChannelLayer:
    return make_layer(clock, expiry=10, group_expiry=100, capacity=3)


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (fails after 5 s)."""

    async def poll() -> None:
        # One loop turn at a time: the state we wait for has no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), DEADLINE)


async def receive_within(
    layer: InMemoryChannelLayer, channel: str, seconds: float = DEADLINE
) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), seconds)


async def assert_nothing_arrives(layer: InMemoryChannelLayer, channel: str) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.05)


# Delivery


async def test_send_then_receive_returns_the_message(
    layer: InMemoryChannelLayer,
) -> None:
    await layer.send("test.channel", {"type": "test.message", "text": "hi"})
    assert await receive_within(layer, "test.channel") == {
        "type": "test.message",
        "text": "hi",
    }
    assert not layer.channels


async def test_receive_waits_for_a_later_send(layer: InMemoryChannelLayer) -> None:
    task = asyncio.ensure_future(receive_within(layer, "wait.here"))
    await until(lambda: "wait.here" in layer.channels)
    await layer.send("wait.here", {"type": "late"})
    assert await task == {"type": "late"}
    assert not layer.channels


async def test_messages_arrive_in_send_order(layer: InMemoryChannelLayer) -> None:
    for number in range(3):
        await layer.send("ordered", {"type": "m", "n": number})
    received = [(await receive_within(layer, "ordered"))["n"] for _ in range(3)]
    assert received == [0, 1, 2]


async def test_pending_messages_show_in_channels(layer: InMemoryChannelLayer) -> None:
    await layer.send("a", {"type": "m"})
    await layer.send("a", {"type": "m"})
    assert "a" in layer.channels
    assert len(layer.channels) == 1
    queue = layer.channels["a"]
    assert queue.qsize() == 2
    assert not queue.empty()
    assert not queue.full()


async def test_new_channel_names_are_unique_and_channels_shaped(
    layer: InMemoryChannelLayer,
) -> None:
    names = {await layer.new_channel() for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        assert re.fullmatch(r"specific\.\.inmemory![a-zA-Z]{12}", name)
        assert layer.require_valid_channel_name(name)
    custom = await layer.new_channel("chat")
    assert custom.startswith("chat.inmemory!")


async def test_new_channel_with_bad_prefix_is_a_type_error(
    layer: InMemoryChannelLayer,
) -> None:
    with pytest.raises(TypeError, match="Invalid channel name"):
        await layer.new_channel("bad prefix")
    with pytest.raises(TypeError, match="fewer than 100"):
        await layer.new_channel("x" * 90)


async def test_new_channel_checks_a_bad_prefix_every_time(
    layer: InMemoryChannelLayer,
) -> None:
    # A valid prefix is checked once; a bad one is never taken for checked.
    for _ in range(3):
        with pytest.raises(TypeError, match="Invalid channel name"):
            await layer.new_channel("bad prefix")
        assert (await layer.new_channel("good")).startswith("good.inmemory!")


async def test_new_channel_names_go_through_a_subclass_check_every_time() -> None:
    class CountsChecks(InMemoryChannelLayer):
        checked: ClassVar[list[str]] = []

        def require_valid_channel_name(
            self, name: object, receive: bool = False
        ) -> bool:
            self.checked.append(str(name))
            return super().require_valid_channel_name(name, receive)

    layer = CountsChecks()
    names = [await layer.new_channel() for _ in range(3)]
    # Only the base rule lets one checked name vouch for its prefix.
    assert CountsChecks.checked == names


async def test_new_channel_letters_are_all_equally_likely(
    layer: InMemoryChannelLayer,
) -> None:
    letters = "".join([(await layer.new_channel())[-12:] for _ in range(5200)])
    counts = [letters.count(letter) for letter in set(letters)]
    # 62,400 letters, 1,200 expected of each of the 52: a letter favoured
    # by a modulo bias (5/256 instead of 4/256) would be far past 1,400.
    assert len(counts) == 52
    assert max(counts) < 1400 and min(counts) > 1000


async def test_specific_channel_names_work_end_to_end(
    layer: InMemoryChannelLayer,
) -> None:
    name = await layer.new_channel()
    await layer.send(name, {"type": "direct"})
    assert await receive_within(layer, name) == {"type": "direct"}


async def test_bad_names_and_messages_are_rejected(
    layer: InMemoryChannelLayer,
) -> None:
    with pytest.raises(TypeError, match="Invalid channel name 'a b'"):
        await layer.send("a b", {"type": "x"})
    with pytest.raises(TypeError, match="Channel name must be a str, got int"):
        await layer.receive(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="messages must be dicts, got list"):
        await layer.send("a", ["type", "x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="messages must be dicts, got str"):
        await layer.group_send("g", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Invalid group name 'a!b'"):
        await layer.group_add("a!b", "chan")
    with pytest.raises(TypeError, match="Invalid channel name 'a!b!c'"):
        await layer.group_add("g", "a!b!c")
    with pytest.raises(TypeError, match="Invalid group name 'g\\*'"):
        await layer.group_discard("g*", "chan")
    assert not layer.channels
    assert not layer.groups


def test_unknown_options_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected option\\(s\\) hosts, prefix"):
        InMemoryChannelLayer(hosts=[], prefix="x")


def test_extensions_and_defaults() -> None:
    layer = InMemoryChannelLayer()
    assert layer.extensions == ["groups", "flush"]
    assert (layer.expiry, layer.group_expiry, layer.capacity) == (60, 86400, 100)


# Capacity


async def test_send_beyond_capacity_raises_channel_full(
    layer: InMemoryChannelLayer,
) -> None:
    for _ in range(3):
        await layer.send("full", {"type": "m"})
    with pytest.raises(ChannelFull, match="'full' already holds 3 messages"):
        await layer.send("full", {"type": "m"})
    assert layer.channels["full"].full()
    await receive_within(layer, "full")
    await layer.send("full", {"type": "m"})


async def test_channel_capacity_glob_applies_on_first_send() -> None:
    # Channels 4.3 fails here: it never compiles channel_capacity.
    layer = make_layer(capacity=5, channel_capacity={"http.request": 1, "ws.*": 2})
    await layer.send("http.request", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("http.request", {"type": "m"})
    await layer.send("ws.a", {"type": "m"})
    await layer.send("ws.a", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("ws.a", {"type": "m"})
    for _ in range(5):
        await layer.send("other", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("other", {"type": "m"})


async def test_group_send_respects_channel_capacity_patterns() -> None:
    layer = make_layer(capacity=5, channel_capacity={"tight.*": 1})
    await layer.group_add("g", "tight.a")
    await layer.group_add("g", "loose.a")
    await layer.group_send("g", {"type": "m", "n": 1})
    await layer.group_send("g", {"type": "m", "n": 2})
    assert layer.channels["tight.a"].qsize() == 1
    assert layer.channels["loose.a"].qsize() == 2


async def test_channel_capacity_regex_applies() -> None:
    layer = make_layer(capacity=5, channel_capacity={re.compile(r"^tight\."): 1})
    await layer.send("tight.one", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("tight.one", {"type": "m"})


async def test_send_to_waiting_receiver_ignores_queue_capacity() -> None:
    layer = make_layer(capacity=1)
    task = asyncio.ensure_future(receive_within(layer, "c"))
    await until(lambda: "c" in layer.channels)
    await layer.send("c", {"type": "first"})
    await layer.send("c", {"type": "second"})
    assert await task == {"type": "first"}
    assert await receive_within(layer, "c") == {"type": "second"}


# Groups


async def test_group_send_reaches_every_member(layer: InMemoryChannelLayer) -> None:
    await layer.group_add("room", "a")
    await layer.group_add("room", "b")
    waiting = asyncio.ensure_future(receive_within(layer, "c"))
    await until(lambda: "c" in layer.channels)
    await layer.group_add("room", "c")
    await layer.group_send("room", {"type": "hello"})
    assert await receive_within(layer, "a") == {"type": "hello"}
    assert await receive_within(layer, "b") == {"type": "hello"}
    assert await waiting == {"type": "hello"}
    assert set(layer.groups["room"]) == {"a", "b", "c"}


async def test_group_send_to_unknown_group_is_a_no_op(
    layer: InMemoryChannelLayer,
) -> None:
    await layer.group_send("nobody", {"type": "x"})
    assert not layer.channels
    assert not layer.groups


async def test_groups_record_membership_times(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.group_add("g", "a")
    clock.advance(5)
    await layer.group_add("g", "b")
    assert layer.groups == {"g": {"a": 1000.0, "b": 1005.0}}


async def test_group_discard_removes_member_and_empty_group(
    layer: InMemoryChannelLayer,
) -> None:
    await layer.group_add("g", "a")
    await layer.group_add("g", "b")
    await layer.group_discard("g", "a")
    assert layer.groups == {"g": {"b": 1000.0}}
    await layer.group_discard("g", "not-a-member")
    await layer.group_discard("no-such-group", "b")
    await layer.group_discard("g", "b")
    assert layer.groups == {}
    await layer.group_send("g", {"type": "x"})
    assert not layer.channels


async def test_group_send_skips_full_member_reaches_rest(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        await layer.send("slow", {"type": "backlog"})
    await layer.group_add("g", "slow")
    await layer.group_add("g", "fast")
    with caplog.at_level(logging.WARNING, "achannels.layers.memory"):
        await layer.group_send("g", {"type": "news"})
    assert await receive_within(layer, "fast") == {"type": "news"}
    assert [(await receive_within(layer, "slow"))["type"] for _ in range(3)] == [
        "backlog"
    ] * 3
    await assert_nothing_arrives(layer, "slow")
    assert "skipped 1 message(s) for channels at capacity" in caplog.text


async def test_full_member_warning_is_rate_limited(
    layer: InMemoryChannelLayer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    layer.expiry = 1000
    for _ in range(3):
        await layer.send("slow", {"type": "backlog"})
    await layer.group_add("g", "slow")
    with caplog.at_level(logging.WARNING, "achannels.layers.memory"):
        for _ in range(50):
            await layer.group_send("g", {"type": "news"})
        assert len(caplog.records) == 1
        clock.advance(layer.full_log_interval)
        await layer.group_send("g", {"type": "news"})
    assert len(caplog.records) == 2
    assert "skipped 1 message(s)" in caplog.records[0].getMessage()
    assert "skipped 50 message(s)" in caplog.records[1].getMessage()
    assert "'g'" in caplog.records[1].getMessage()


# Isolation


async def test_receiver_never_sees_later_sender_mutation(
    layer: InMemoryChannelLayer,
) -> None:
    payload: dict[str, Any] = {"items": [1, 2], "meta": {"k": "v"}, "pair": (1, [2])}
    message: dict[str, Any] = {"type": "m", "payload": payload}
    await layer.send("c", message)
    payload["items"].append(3)
    payload["meta"]["k"] = "changed"
    payload["pair"][1].append(3)
    message["type"] = "changed"
    received = await receive_within(layer, "c")
    assert received == {
        "type": "m",
        "payload": {"items": [1, 2], "meta": {"k": "v"}, "pair": (1, [2])},
    }


async def test_waiting_receiver_never_sees_later_sender_mutation(
    layer: InMemoryChannelLayer,
) -> None:
    task = asyncio.ensure_future(receive_within(layer, "c"))
    await until(lambda: "c" in layer.channels)
    message: dict[str, Any] = {"type": "m", "items": [1]}
    await layer.send("c", message)
    message["items"].append(2)
    message["extra"] = True
    assert await task == {"type": "m", "items": [1]}


async def test_group_members_never_share_mutable_objects(
    layer: InMemoryChannelLayer,
) -> None:
    waiting = asyncio.ensure_future(receive_within(layer, "w"))
    await until(lambda: "w" in layer.channels)
    for name in ("a", "b", "w"):
        await layer.group_add("g", name)
    message: dict[str, Any] = {"type": "m", "nested": {"list": [1]}}
    await layer.group_send("g", message)
    message["nested"]["list"].append("sender")
    first = await receive_within(layer, "a")
    first["nested"]["list"].append("a")
    first["added"] = 1
    second = await receive_within(layer, "b")
    third = await waiting
    assert second == third == {"type": "m", "nested": {"list": [1]}}
    assert second["nested"] is not third["nested"]


async def test_flat_group_messages_are_separate_dicts(
    layer: InMemoryChannelLayer,
) -> None:
    for name in ("a", "b"):
        await layer.group_add("g", name)
    await layer.group_send("g", {"type": "m", "text": "hi"})
    first = await receive_within(layer, "a")
    first["text"] = "mutated"
    assert await receive_within(layer, "b") == {"type": "m", "text": "hi"}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "m", "when": datetime.datetime(2024, 1, 1)},
        {"type": "m", "data": {"tags": ["a", {"x"}]}},
        {"type": "m", "data": {frozenset({1}): "key"}},
        {"type": "m", "n": complex(1, 2)},
    ],
    ids=["datetime", "nested set", "frozenset key", "complex"],
)
async def test_non_msgpack_values_are_refused_with_the_redis_layers_error(
    layer: InMemoryChannelLayer, message: dict[str, Any]
) -> None:
    from achannels.layers.redis.serializers import MsgPackSerializer

    with pytest.raises(TypeError) as on_redis:
        MsgPackSerializer().serialize(message)
    with pytest.raises(TypeError) as on_send:
        await layer.send("c", message)
    assert str(on_send.value) == str(on_redis.value)
    await layer.group_add("g", "c")
    with pytest.raises(TypeError) as on_group_send:
        await layer.group_send("g", message)
    assert str(on_group_send.value) == str(on_redis.value)
    assert not layer.channels.get("c")


async def test_msgpack_subclasses_are_deep_copied_with_their_type(
    layer: InMemoryChannelLayer,
) -> None:
    class Level(enum.IntEnum):
        HIGH = 2

    await layer.send("c", {"type": "m", "level": Level.HIGH, "raw": bytearray(b"x")})
    received = await receive_within(layer, "c")
    assert received["level"] is Level.HIGH
    assert received["raw"] == bytearray(b"x")


async def test_dict_subclass_message_is_deep_copied_with_its_type(
    layer: InMemoryChannelLayer,
) -> None:
    message: OrderedDict[str, Any] = OrderedDict(type="m", items=[1])
    await layer.send("c", message)
    message["items"].append(2)
    received = await receive_within(layer, "c")
    assert type(received) is OrderedDict
    assert received == OrderedDict(type="m", items=[1])


async def test_uncopyable_value_is_a_type_error_naming_the_key(
    layer: InMemoryChannelLayer,
) -> None:
    message = {"type": "m", "data": {"items": [1, threading.Lock()]}}
    with pytest.raises(TypeError) as info:
        await layer.send("c", message)
    assert str(info.value).startswith("Cannot send message['data']['items'][1]: lock")
    assert not layer.channels
    await layer.group_add("g", "c")
    with pytest.raises(TypeError, match=re.escape("message['data']['items'][1]")):
        await layer.group_send("g", message)
    assert not layer.channels


async def test_self_containing_message_is_a_type_error(
    layer: InMemoryChannelLayer,
) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="nests too deeply or contains itself"):
        await layer.send("c", {"type": "m", "loop": loop})


# Expiry


async def test_unreceived_message_expires(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.send("c", {"type": "old"})
    clock.advance(9.9)
    await layer.send("c", {"type": "newer"})
    clock.advance(0.1)
    assert await receive_within(layer, "c") == {"type": "newer"}
    assert not layer.channels


async def test_expired_messages_leave_channels_empty_on_the_next_receive(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    for number in range(50):
        await layer.send(f"c{number}", {"type": "m"})
    clock.advance(10)
    # As in Channels: a send cleans nothing up; the next receive cleans all.
    await layer.send("fresh", {"type": "m"})
    assert len(layer.channels) == 51
    assert await receive_within(layer, "fresh") == {"type": "m"}
    assert list(layer.channels) == []


async def test_expiry_frees_capacity(layer: InMemoryChannelLayer, clock: Clock) -> None:
    for _ in range(3):
        await layer.send("c", {"type": "m"})
    clock.advance(10)
    await layer.send("c", {"type": "after"})
    assert await receive_within(layer, "c") == {"type": "after"}


async def test_channel_with_expired_message_leaves_its_groups(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    # Channels' rule: a channel nobody read from for `expiry` is taken for dead.
    await layer.group_add("g1", "dead")
    await layer.group_add("g2", "dead")
    await layer.group_add("g1", "alive")
    await layer.send("dead", {"type": "m"})
    clock.advance(10)
    await layer.group_send("g1", {"type": "after"})
    # Channels keeps a group emptied by expiry as an empty entry.
    assert layer.groups == {"g1": {"alive": 1000.0}, "g2": {}}
    assert list(layer.channels) == ["alive"]


async def test_received_messages_do_not_expire_later(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.group_add("g", "c")
    await layer.send("c", {"type": "m"})
    await receive_within(layer, "c")
    clock.advance(5)
    await layer.send("c", {"type": "m2"})
    clock.advance(6)  # the first message's deadline passes; the second's not
    assert await receive_within(layer, "c") == {"type": "m2"}
    assert "c" in layer.groups["g"]


async def test_membership_expires_after_group_expiry(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.group_add("g", "a")
    clock.advance(50)
    await layer.group_add("g", "b")
    clock.advance(50)
    await layer.group_send("g", {"type": "m"})
    assert layer.groups == {"g": {"b": 1050.0}}
    assert list(layer.channels) == ["b"]
    clock.advance(50)
    await layer.group_send("g", {"type": "m"})
    assert layer.groups == {"g": {}}  # emptied by expiry: kept, as in Channels


async def test_group_add_refreshes_membership(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.group_add("g", "a")
    await layer.group_add("g", "b")
    clock.advance(60)
    await layer.group_add("g", "a")
    clock.advance(60)
    await layer.group_send("g", {"type": "m"})
    assert layer.groups == {"g": {"a": 1060.0}}
    assert list(layer.channels) == ["a"]


async def test_discard_and_re_add_restarts_group_expiry(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    await layer.group_add("g", "a")
    clock.advance(60)
    await layer.group_discard("g", "a")
    await layer.group_add("g", "a")
    clock.advance(60)
    await layer.group_send("g", {"type": "m"})
    assert layer.groups == {"g": {"a": 1060.0}}


async def test_expired_put_back_message_still_expires(
    layer: InMemoryChannelLayer, clock: Clock
) -> None:
    task = asyncio.ensure_future(layer.receive("c"))
    await until(lambda: "c" in layer.channels)
    await layer.send("c", {"type": "m"})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert layer.channels["c"].qsize() == 1
    clock.advance(10)
    await layer.send("other", {"type": "m"})
    assert "c" in layer.channels  # a send cleans nothing up
    await receive_within(layer, "other")
    assert "c" not in layer.channels


# Concurrent receivers and cancellation


async def test_two_receivers_on_one_channel_lose_nothing(
    layer: InMemoryChannelLayer,
) -> None:
    # Channels 4.3 drops the second receiver's queue when the first empties it.
    first = asyncio.ensure_future(receive_within(layer, "shared"))
    second = asyncio.ensure_future(receive_within(layer, "shared"))
    await until(lambda: "shared" in layer.channels)
    await asyncio.sleep(0)
    await layer.send("shared", {"type": "m", "n": 1})
    assert await first == {"type": "m", "n": 1}
    await layer.send("shared", {"type": "m", "n": 2})
    assert await second == {"type": "m", "n": 2}
    assert not layer.channels


async def test_many_receivers_each_get_exactly_one_message(
    layer: InMemoryChannelLayer,
) -> None:
    layer.capacity = 1000
    receivers = [
        asyncio.ensure_future(receive_within(layer, "work")) for _ in range(20)
    ]
    await asyncio.sleep(0)
    for number in range(10):
        await layer.send("work", {"type": "m", "n": number})
    await asyncio.sleep(0)
    for number in range(10, 20):
        await layer.send("work", {"type": "m", "n": number})
    results = await asyncio.gather(*receivers)
    assert sorted(message["n"] for message in results) == list(range(20))
    assert not layer.channels


async def test_cancelled_receive_leaves_no_waiter(
    layer: InMemoryChannelLayer,
) -> None:
    task = asyncio.ensure_future(layer.receive("c"))
    await until(lambda: "c" in layer.channels)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not layer.channels
    await layer.send("c", {"type": "m"})
    assert await receive_within(layer, "c") == {"type": "m"}


async def test_timed_out_receive_leaves_no_waiter(
    layer: InMemoryChannelLayer,
) -> None:
    await assert_nothing_arrives(layer, "c")
    assert not layer.channels


async def test_receive_cancelled_after_hand_off_puts_message_back(
    layer: InMemoryChannelLayer,
) -> None:
    task = asyncio.ensure_future(layer.receive("c"))
    await until(lambda: "c" in layer.channels)
    await layer.send("c", {"type": "m", "n": 1})
    await layer.send("c", {"type": "m", "n": 2})
    # The message reached the waiter's future, but it is cancelled before it
    # runs again: the message must go back to the front, not vanish.
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await receive_within(layer, "c") == {"type": "m", "n": 1}
    assert await receive_within(layer, "c") == {"type": "m", "n": 2}


async def test_cancelled_receiver_passes_message_to_next_waiter(
    layer: InMemoryChannelLayer,
) -> None:
    first = asyncio.ensure_future(layer.receive("c"))
    await until(lambda: "c" in layer.channels)
    second = asyncio.ensure_future(receive_within(layer, "c"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await layer.send("c", {"type": "m"})
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == {"type": "m"}
    assert not layer.channels


async def test_group_message_put_back_after_cancel_is_still_a_copy(
    layer: InMemoryChannelLayer,
) -> None:
    task = asyncio.ensure_future(layer.receive("a"))
    await until(lambda: "a" in layer.channels)
    await layer.group_add("g", "a")
    await layer.group_add("g", "b")
    await layer.group_send("g", {"type": "m", "items": [1]})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = await receive_within(layer, "a")
    second = await receive_within(layer, "b")
    assert first == second == {"type": "m", "items": [1]}
    assert first["items"] is not second["items"]


async def test_cancel_race_under_wait_for_timeouts_loses_nothing() -> None:
    layer = make_layer(capacity=10_000)
    received: list[int] = []

    async def consume() -> None:
        while len(received) < 500:
            try:
                message = await asyncio.wait_for(layer.receive("c"), 0.0005)
            except asyncio.TimeoutError:
                continue
            received.append(message["n"])

    consumers = [asyncio.ensure_future(consume()) for _ in range(3)]
    for number in range(500):
        await layer.send("c", {"type": "m", "n": number})
        if number % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*consumers), DEADLINE * 4)
    assert sorted(received) == list(range(500))


# Flush and close


async def test_flush_drops_messages_and_groups(layer: InMemoryChannelLayer) -> None:
    await layer.send("a", {"type": "m"})
    await layer.group_add("g", "b")
    await layer.flush()
    assert not layer.channels
    assert not layer.groups
    await assert_nothing_arrives(layer, "a")
    await layer.group_send("g", {"type": "m"})
    assert not layer.channels


async def test_flush_keeps_waiting_receivers_served(
    layer: InMemoryChannelLayer,
) -> None:
    task = asyncio.ensure_future(receive_within(layer, "w"))
    await until(lambda: "w" in layer.channels)
    await layer.flush()
    await layer.send("w", {"type": "after"})
    assert await task == {"type": "after"}


async def test_close_keeps_the_layer_usable(layer: InMemoryChannelLayer) -> None:
    await layer.send("a", {"type": "m"})
    await layer.close()
    assert await receive_within(layer, "a") == {"type": "m"}
    await layer.send("a", {"type": "m"})
    assert await receive_within(layer, "a") == {"type": "m"}


# Event loops


def test_one_layer_serves_event_loops_one_after_another() -> None:
    layer = make_layer()

    async def send() -> None:
        await layer.send("c", {"type": "m", "n": 1})
        await layer.group_add("g", "c")

    async def receive() -> dict[str, Any]:
        waiting = asyncio.ensure_future(receive_within(layer, "c"))
        await until(lambda: "c" in layer.channels)
        await layer.group_send("g", {"type": "m", "n": 2})
        first = await receive_within(layer, "c")
        return {"first": first, "second": await waiting}

    asyncio.run(send())
    result = asyncio.run(receive())
    assert result["first"]["n"] in (1, 2)
    assert {result["first"]["n"], result["second"]["n"]} == {1, 2}


def test_receive_abandoned_with_its_closed_loop_does_not_eat_messages() -> None:
    layer = make_layer()
    old_loop = asyncio.new_event_loop()
    abandoned: list[asyncio.Future[Any]] = []

    async def start_and_abandon() -> None:
        abandoned.append(asyncio.ensure_future(layer.receive("c")))
        await asyncio.sleep(0)

    old_loop.run_until_complete(start_and_abandon())
    old_loop.close()  # the pending receive never runs again

    async def use_again() -> dict[str, Any]:
        await layer.send("c", {"type": "m"})
        return await receive_within(layer, "c")

    assert asyncio.run(use_again()) == {"type": "m"}
    assert not abandoned[0].done()
    # Drop the abandoned task quietly (it is pending on a closed loop).
    abandoned.clear()
    gc.collect()


async def test_receiver_on_another_threads_loop_is_woken() -> None:
    layer = make_layer()
    result: dict[str, Any] = {}
    waiting = threading.Event()

    def run_receiver() -> None:
        async def receive() -> None:
            task = asyncio.ensure_future(receive_within(layer, "x"))
            await until(lambda: "x" in layer.channels)
            waiting.set()
            result["message"] = await task

        asyncio.run(receive())

    thread = threading.Thread(target=run_receiver)
    thread.start()
    assert await asyncio.to_thread(waiting.wait, DEADLINE)
    await layer.send("x", {"type": "cross"})
    await asyncio.to_thread(thread.join, DEADLINE)
    assert result == {"message": {"type": "cross"}}


async def test_cross_thread_receiver_cancelled_before_delivery_loses_nothing() -> None:
    layer = make_layer()
    blocked = threading.Event()
    sent = threading.Event()

    def run_receiver() -> None:
        async def receive_then_cancel() -> None:
            task = asyncio.ensure_future(layer.receive("x"))
            await until(lambda: "x" in layer.channels)

            def block_then_cancel() -> None:
                # Hold this loop while the other thread sends, so that the
                # delivery is queued behind the cancellation.
                blocked.set()
                sent.wait(DEADLINE)
                task.cancel()

            asyncio.get_running_loop().call_soon(block_then_cancel)
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(receive_then_cancel())

    thread = threading.Thread(target=run_receiver)
    thread.start()
    assert await asyncio.to_thread(blocked.wait, DEADLINE)
    await layer.send("x", {"type": "m"})
    sent.set()
    await asyncio.to_thread(thread.join, DEADLINE)
    assert not thread.is_alive()
    assert await receive_within(layer, "x") == {"type": "m"}
    assert not layer.channels


# Channels' expiry timing and method names (packages wrap them in fixtures)


async def test_send_leaves_expired_channels_listed_until_the_next_receive(
    clock: Clock,
) -> None:
    layer = make_layer(clock, expiry=0.1)
    await layer.send("test-channel-1", {"type": "message.1"})
    clock.advance(0.2)
    await layer.send("test-channel-2", {"type": "message.2"})
    assert sorted(layer.channels) == ["test-channel-1", "test-channel-2"]
    assert (await receive_within(layer, "test-channel-2"))["type"] == "message.2"
    assert layer.channels == {}


class RecordingLayer(InMemoryChannelLayer):
    """What a package's fixture does: wrap Channels' private methods."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[tuple[str, Any]] = []

    def _clean_expired(self) -> None:
        self.calls.append(("_clean_expired", None))
        super()._clean_expired()

    def _remove_from_groups(self, channel: str) -> None:
        self.calls.append(("_remove_from_groups", channel))
        super()._remove_from_groups(channel)


async def test_receive_and_group_send_go_through_clean_expired(clock: Clock) -> None:
    layer = RecordingLayer(expiry=10)
    layer._clock = clock
    await layer.send("c", {"type": "m"})
    assert layer.calls == []  # a send cleans nothing, as in Channels
    await receive_within(layer, "c")
    assert layer.calls == [("_clean_expired", None)]
    layer.calls.clear()
    await layer.group_send("g", {"type": "m"})
    assert layer.calls == [("_clean_expired", None)]


async def test_expired_message_removes_its_channel_through_remove_from_groups(
    clock: Clock,
) -> None:
    layer = RecordingLayer(expiry=10)
    layer._clock = clock
    await layer.group_add("g", "dead")
    await layer.send("dead", {"type": "m"})
    clock.advance(11)
    await layer.group_send("g", {"type": "m"})
    assert ("_remove_from_groups", "dead") in layer.calls
    assert layer.groups == {"g": {}}


def test_channels_private_method_names_exist_with_channels_signatures() -> None:
    import inspect

    layer = InMemoryChannelLayer()
    assert list(inspect.signature(layer._clean_expired).parameters) == []
    assert list(inspect.signature(layer._remove_from_groups).parameters) == ["channel"]


async def test_non_dict_message_refusal_is_also_an_assertion_error() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(AssertionError):
        await layer.send("c", "text")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        await layer.group_send("g", ["text"])  # type: ignore[arg-type]


async def test_send_refuses_the_reserved_channel_key_as_channels_asserts(
    layer: InMemoryChannelLayer,
) -> None:
    message = {"type": "m", "__asgi_channel__": "x"}
    with pytest.raises(AssertionError, match="__asgi_channel__"):
        await layer.send("c", message)
    with pytest.raises(ValueError, match="__asgi_channel__"):
        await layer.send("c", message)
    assert not layer.channels
    await layer.group_send("empty", message)  # no member: Channels sends nothing
    await layer.group_add("g", "c")
    with pytest.raises(AssertionError, match="__asgi_channel__"):
        await layer.group_send("g", message)
    assert not layer.channels
