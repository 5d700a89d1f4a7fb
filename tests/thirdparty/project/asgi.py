"""The project's application: DCRF and room consumers, strawberry's GraphQL
consumers and the worker's task consumer, routed by Channels' routers."""

import os
import warnings

import achannels

# Before any import that reaches channels (see settings.py for the filter).
warnings.filterwarnings("ignore", category=achannels.ChannelsInstalledWarning)
achannels.install_as_channels()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.thirdparty.project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from channels.routing import (  # noqa: E402
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from django.urls import path, re_path  # noqa: E402
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer  # noqa: E402

from .consumers import (  # noqa: E402
    TASKS,
    EchoConsumer,
    RoomConsumer,
    TaskConsumer,
    UserConsumer,
)
from .schema import schema  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^graphql", GraphQLHTTPConsumer.as_asgi(schema=schema)),
                re_path(r"^", django_application),
            ]
        ),
        "websocket": URLRouter(
            [
                path("ws/echo/", EchoConsumer.as_asgi()),
                path("ws/users/", UserConsumer.as_asgi()),
                path("ws/room/<str:room>/", RoomConsumer.as_asgi()),
                re_path(r"^graphql", GraphQLWSConsumer.as_asgi(schema=schema)),
            ]
        ),
        "channel": ChannelNameRouter({TASKS: TaskConsumer.as_asgi()}),
    }
)
