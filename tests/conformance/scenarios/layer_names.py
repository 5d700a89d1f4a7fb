"""Name validation of the base and in-memory layers: ``invalid_name_error``,
the exception types, and messages that start with Channels' text."""

import asyncio
import warnings

from _transcript import Transcript
from channels.layers import BaseChannelLayer, InMemoryChannelLayer

BAD_NAMES = ["has space", "x" * 100, "ünïcode", "", 42, None, "group!"]


async def main(t: Transcript) -> None:
    t.call("invalid_name_error", getattr, BaseChannelLayer, "invalid_name_error")
    t.call(
        "on the in-memory layer", getattr, InMemoryChannelLayer, "invalid_name_error"
    )
    t.call("MAX_NAME_LENGTH", getattr, BaseChannelLayer, "MAX_NAME_LENGTH")
    layer = InMemoryChannelLayer()
    for bad in BAD_NAMES:
        t.call(
            f"require_valid_channel_name {bad!r}", layer.require_valid_channel_name, bad
        )
        t.call(f"require_valid_group_name {bad!r}", layer.require_valid_group_name, bad)
        await t.outcome(f"send {bad!r}", layer.send(bad, {"type": "x"}))
        await t.outcome(f"group_add {bad!r}", layer.group_add(bad, "ok"))
        await t.outcome(f"group_send {bad!r}", layer.group_send(bad, {"type": "x"}))
    for good in ["a", "a.b-c_d", "specific.abc!", "specific.abc!def", "x" * 99]:
        t.call(f"valid channel {good!r}", layer.require_valid_channel_name, good)
    t.call("specific receive name", layer.require_valid_channel_name, "a!b", True)
    t.call("non_local_name", layer.non_local_name, "specific.abc!def")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.call("deprecated valid_channel_name", layer.valid_channel_name, "ok")
        t.call("deprecated valid_group_name", layer.valid_group_name, "ok")
    t.equal("deprecations", [w.category.__name__ for w in caught])


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
