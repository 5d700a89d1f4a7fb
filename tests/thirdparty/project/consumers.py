"""Consumers written for Channels: DCRF's, and a plain group fan-out one."""

from __future__ import annotations

from typing import Any

from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import BaseChannelLayer
from django.contrib.auth.models import User
from djangochannelsrestframework.consumers import AsyncAPIConsumer
from djangochannelsrestframework.decorators import action
from djangochannelsrestframework.generics import GenericAsyncAPIConsumer
from djangochannelsrestframework.mixins import (
    CreateModelMixin,
    ListModelMixin,
    PatchModelMixin,
)
from djangochannelsrestframework.observer.generics import ObserverModelInstanceMixin
from rest_framework import serializers


def whoami(consumer: AsyncConsumer) -> dict[str, str]:
    """Where the code this server runs comes from: achannels, not the real
    Channels installed next to it."""
    import channels

    return {
        "channels": channels.__name__,
        "layer_base": BaseChannelLayer.__module__,
        "consumer_base": AsyncConsumer.__module__,
        "is_consumer": str(isinstance(consumer, AsyncConsumer)),
    }


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class EchoConsumer(AsyncAPIConsumer):
    """DCRF actions: async, sync (run through database_sync_to_async)."""

    @action()
    async def echo(self, text: str = "", **kwargs: Any) -> tuple[dict[str, str], int]:
        return {"text": text}, 200

    @action()
    async def whoami(self, **kwargs: Any) -> tuple[dict[str, str], int]:
        return whoami(self), 200

    @action()
    def count_users(self, **kwargs: Any) -> tuple[dict[str, int], int]:
        return {"users": User.objects.count()}, 200


class UserConsumer(
    ListModelMixin,
    CreateModelMixin,
    PatchModelMixin,
    ObserverModelInstanceMixin,
    GenericAsyncAPIConsumer,
):
    """DCRF's generic consumer on ``auth.User``, with instance observers
    (``post_save`` -> ``group_send`` from sync code -> this consumer)."""

    queryset = User.objects.all()
    serializer_class = UserSerializer


#: The channel ``manage.py runworker tasks`` serves with :class:`TaskConsumer`.
TASKS = "tasks"


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """Fan-out through the configured layer to the group named in the URL,
    directly or (``{"via_worker": true}``) through the worker."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content.get("via_worker"):
            message = {"type": "task.relay", "room": self.room, "text": content["text"]}
            await self.channel_layer.send(TASKS, message)
            return
        await self.channel_layer.group_send(
            self.room, {"type": "room.message", "text": content["text"]}
        )

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"text": event["text"], "layer": type(self.channel_layer).__name__}
        )


class TaskConsumer(AsyncConsumer):
    """The worker's consumer: relays a task's text to its room."""

    async def task_relay(self, message: dict[str, Any]) -> None:
        await self.channel_layer.group_send(
            message["room"],
            {"type": "room.message", "text": f"worker: {message['text']}"},
        )
