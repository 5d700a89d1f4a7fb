"""Presence under the test communicators, as users' own tests will use it."""

from __future__ import annotations

from typing import Any

from achannels.generic.websocket import AsyncJsonWebsocketConsumer
from achannels.layers import InMemoryChannelLayer
from achannels.presence import PRESENCE_REF
from achannels.testing import WebsocketCommunicator


class Tracked(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.presence.track("room.t", key=self.scope["query_string"].decode())

    async def presence_diff(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


async def test_entries_follow_connections_under_the_communicator(
    memory_layer: InMemoryChannelLayer,
) -> None:
    ada = WebsocketCommunicator(Tracked.as_asgi(), "/?ada")
    bob = WebsocketCommunicator(Tracked.as_asgi(), "/?bob")
    assert (await ada.connect())[0] and (await bob.connect())[0]
    diff = await ada.receive_json_from()
    while "bob" not in diff["joins"]:
        diff = await ada.receive_json_from()
    listing = await memory_layer.presence_list("room.t")
    assert sorted(listing) == ["ada", "bob"]
    assert await memory_layer.group_size("room.t") == 2
    await bob.disconnect()
    diff = await ada.receive_json_from()
    assert list(diff["leaves"]) == ["bob"]
    assert diff["leaves"]["bob"] == [{PRESENCE_REF: listing["bob"][0][PRESENCE_REF]}]
    await ada.disconnect()
    assert await memory_layer.presence_list("room.t") == {}
    assert await memory_layer.group_size("room.t") == 0


class OwnPresence(AsyncJsonWebsocketConsumer):
    """Written for Channels: its own handler of "presence" messages."""

    groups = ["lobby"]

    async def presence(self, event: dict[str, Any]) -> None:  # type: ignore[override]
        await self.send_json({"handled": event["who"]})


class AssignsPresence(AsyncJsonWebsocketConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.presence = {"mine": True}  # type: ignore[assignment]

    async def connect(self) -> None:
        await self.accept()
        await self.send_json(self.presence)


async def test_consumers_with_their_own_presence_keep_it(
    memory_layer: InMemoryChannelLayer,
) -> None:
    handler = WebsocketCommunicator(OwnPresence.as_asgi(), "/")
    assert (await handler.connect())[0]
    await memory_layer.group_send("lobby", {"type": "presence", "who": "ada"})
    assert await handler.receive_json_from() == {"handled": "ada"}
    await handler.disconnect()
    assigned = WebsocketCommunicator(AssignsPresence.as_asgi(), "/")
    assert (await assigned.connect())[0]
    assert await assigned.receive_json_from() == {"mine": True}
    await assigned.disconnect()
