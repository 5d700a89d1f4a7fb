"""The project's ASGI application: Django for HTTP, consumers for the rest."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
# Set Django up before importing anything that uses models.
django_asgi_app = get_asgi_application()

from chat.routing import channel_routes, websocket_urlpatterns  # noqa: E402

from achannels.auth import AuthMiddlewareStack  # noqa: E402
from achannels.routing import (  # noqa: E402
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from achannels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "channel": ChannelNameRouter(channel_routes),
    }
)
