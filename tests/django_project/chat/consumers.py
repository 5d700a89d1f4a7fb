"""Consumers of the sample project, one per behaviour the tests look at."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from chat.models import Note
from django.contrib.auth import authenticate

from achannels.auth import login, logout
from achannels.consumer import AsyncConsumer
from achannels.db import database_sync_to_async
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)


def describe_user(scope: Mapping[str, Any]) -> dict[str, Any]:
    user = scope["user"]
    return {
        "user": user.get_username() if user.is_authenticated else None,
        "authenticated": bool(user.is_authenticated),
    }


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every frame back."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class WhoAmIConsumer(AsyncJsonWebsocketConsumer):
    """Tells the client who ``scope["user"]`` is."""

    async def connect(self) -> None:
        await self.accept()
        await self.send_json(describe_user(self.scope))


class LoginConsumer(AsyncJsonWebsocketConsumer):
    """Logs in with ``?username=...&password=...`` before accepting, so the
    rotated session cookie goes out with the handshake response."""

    async def connect(self) -> None:
        query = parse_qs(self.scope["query_string"].decode())
        user = await database_sync_to_async(authenticate)(
            username=query.get("username", [""])[0],
            password=query.get("password", [""])[0],
        )
        if user is not None:
            await login(self.scope, user)
        await self.accept()
        await self.send_json(describe_user(self.scope))


class LogoutConsumer(AsyncJsonWebsocketConsumer):
    """Logs out before accepting."""

    async def connect(self) -> None:
        await logout(self.scope)
        await self.accept()
        await self.send_json(describe_user(self.scope))


class NoteConsumer(JsonWebsocketConsumer):
    """A sync consumer using the ORM directly: ``{"add": text}`` stores a note
    by the connected user, ``{"list": true}`` lists them; both reply with
    every note."""

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        if "add" in content:
            user = self.scope["user"]
            Note.objects.create(
                text=content["add"], author=user if user.is_authenticated else None
            )
        self.send_json(
            {
                "notes": [
                    {
                        "text": note.text,
                        "author": note.author.get_username() if note.author else None,
                    }
                    for note in Note.objects.select_related("author")
                ]
            }
        )


class TaskConsumer(AsyncConsumer):
    """Background task for the worker tests: answers on ``reply_to``."""

    async def task_echo(self, message: dict[str, Any]) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.send(
            message["reply_to"],
            {"type": "task.done", "text": message["text"], "pid": os.getpid()},
        )
