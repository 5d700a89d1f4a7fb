"""WebSocket routes and worker channels of the sample project."""

from chat import consumers
from django.urls import path

websocket_urlpatterns = [
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    path("ws/whoami/", consumers.WhoAmIConsumer.as_asgi()),
    path("ws/login/", consumers.LoginConsumer.as_asgi()),
    path("ws/logout/", consumers.LogoutConsumer.as_asgi()),
    path("ws/notes/", consumers.NoteConsumer.as_asgi()),
]

#: Routed by ``ChannelNameRouter`` in ``testproject.asgi``.
channel_routes = {"testproject-tasks": consumers.TaskConsumer.as_asgi()}
