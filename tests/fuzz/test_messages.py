"""Property tests of dispatch: any message reaching a consumer either calls
the handler its ``type`` names, with the message itself, or raises the
``ValueError`` Channels raises (not a dict, no ``type``, a type that is not a
string, a leading underscore, no such handler). Private methods are never
reached.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from achannels.consumer import AsyncConsumer, SyncConsumer, get_handler_name


class Recorder(AsyncConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.handled: list[Any] = []

    async def fuzz_message(self, message: Any) -> None:
        self.handled.append(message)

    async def _private(self, message: Any) -> None:
        raise AssertionError("a private method was reached")

    async def __secret__(self, message: Any) -> None:
        raise AssertionError("a dunder method was reached")


class SyncRecorder(SyncConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.handled: list[Any] = []

    def fuzz_message(self, message: Any) -> None:
        self.handled.append(message)

    def _private(self, message: Any) -> None:
        raise AssertionError("a private method was reached")


types = st.one_of(
    st.sampled_from(
        [
            "fuzz.message",
            "fuzz_message",
            "fuzz.message.",
            ".fuzz.message",
            "_private",
            "._private",
            "__secret__",
            ".._secret__",
            "fuzz.message\n",
            "FUZZ.MESSAGE",
            "",
            ".",
        ]
    ),
    st.text(max_size=15),
    st.integers(),
    st.none(),
    st.binary(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
)
payloads = st.dictionaries(
    st.text(max_size=5), st.one_of(st.none(), st.integers(), st.text(max_size=5))
)
messages = st.one_of(
    st.builds(lambda kind, body: {**body, "type": kind}, types, payloads),
    payloads,
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.none(),
)

# Public attributes of the consumers other than the fuzz handler: a type
# naming one of them is the application's business (Channels calls it).
OTHER_PUBLIC = {
    name
    for cls in (Recorder, SyncRecorder)
    for name in dir(cls)
    if not name.startswith("_") and name != "fuzz_message"
}


def expected_outcome(message: Any) -> str:
    """ "handled" or "ValueError", as Channels' rules decide."""
    try:
        name = get_handler_name(message)
    except ValueError:
        return "ValueError"
    assume(name not in OTHER_PUBLIC)
    return "handled" if name == "fuzz_message" else "ValueError"


@settings(max_examples=400, deadline=None)
@given(message=messages)
async def test_async_dispatch_calls_the_named_handler_or_raises_value_error(
    message: Any,
) -> None:
    expected = expected_outcome(message)
    consumer = Recorder()
    try:
        await consumer.dispatch(message)
    except ValueError as error:
        assert expected == "ValueError", error
        assert str(error)
        return
    assert expected == "handled"
    assert consumer.handled == [message]
    assert consumer.handled[0] is message


@settings(max_examples=100, deadline=None)
@given(message=messages)
async def test_sync_dispatch_calls_the_named_handler_or_raises_value_error(
    message: Any,
) -> None:
    expected = expected_outcome(message)
    consumer = SyncRecorder()
    try:
        await consumer.dispatch(message)
    except ValueError as error:
        assert expected == "ValueError", error
        return
    assert expected == "handled"
    assert consumer.handled == [message]
