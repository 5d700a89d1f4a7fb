"""A strawberry schema whose subscriptions use Channels' layer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

ROOM = "gqlroom"


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def say(self, info: Info, text: str) -> bool:
        layer = info.context["ws"].channel_layer
        await layer.group_send(ROOM, {"type": "chat.message", "text": text})
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int) -> AsyncGenerator[int, None]:
        for number in range(to):
            yield number
            await asyncio.sleep(0)

    @strawberry.subscription
    async def room(self, info: Info) -> AsyncGenerator[str, None]:
        consumer = info.context["ws"]
        async with consumer.listen_to_channel("chat.message", groups=[ROOM]) as feed:
            # Said once the group is joined, so a client knows when to send.
            yield "joined"
            async for message in feed:
                yield message["text"]


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
