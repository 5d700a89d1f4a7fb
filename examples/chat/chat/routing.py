from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    # Any room name reaches the consumer, which explains what it refuses.
    re_path(r"^ws/chat/(?P<room>[^/]+)/$", consumers.ChatConsumer.as_asgi()),
]
