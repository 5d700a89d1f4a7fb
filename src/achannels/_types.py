"""Types shared across achannels: ASGI callables, scopes and layer protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeAlias

__all__ = [
    "ASGIApp",
    "ChannelLayerProtocol",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

#: A message travelling over ASGI or a channel layer. Payload values are free.
Message: TypeAlias = dict[str, Any]
#: An ASGI connection scope. Channels users add keys (``user``, ``session``,
#: ``url_route``) so it stays a mutable mapping rather than a closed TypedDict.
Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class ChannelLayerProtocol(Protocol):
    """What consumers need from a channel layer."""

    extensions: list[str]

    async def send(self, channel: str, message: Message) -> None: ...

    async def receive(self, channel: str) -> Message: ...

    async def new_channel(self, prefix: str = "specific.") -> str: ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: Message) -> None: ...
