"""Expired in-memory messages are cleaned up when a channel is received from
(and on group_send): a send to another channel leaves both listed; the next
receive cleans both, and drops the expired channel from its groups."""

import asyncio

from _transcript import Transcript
from channels.layers import InMemoryChannelLayer

EXPIRY = 0.05


def state(layer) -> dict:
    return {
        "channels": sorted(layer.channels),
        "groups": {g: sorted(m) for g, m in sorted(layer.groups.items())},
    }


async def main(t: Transcript) -> None:
    layer = InMemoryChannelLayer(expiry=EXPIRY)
    await layer.group_add("room", "stale")
    await layer.send("stale", {"type": "old"})
    await asyncio.sleep(EXPIRY * 3)  # let the message expire: time is tested
    await layer.send("fresh", {"type": "new"})
    t.equal("after the second send", state(layer))
    await t.outcome("receive fresh", layer.receive("fresh"))
    t.equal("after receive", state(layer))

    await layer.group_add("room", "late")
    await layer.send("late", {"type": "old"})
    await asyncio.sleep(EXPIRY * 3)
    await layer.group_add("room", "other")
    await layer.group_send("room", {"type": "to.room"})
    t.equal("after group_send", state(layer))
    await t.outcome("receive from the group", layer.receive("other"))
    t.equal("at the end", state(layer))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
