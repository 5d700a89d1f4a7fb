"""ASGI entry point: ``uvicorn chat_project.asgi:application``.

HTTP goes to Django; WebSockets go through the origin check, the session and
auth middleware, then to the chat consumer -- the same stack a Channels
project writes, with ``achannels`` in the imports.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_project.settings")
# Set up Django (apps, settings) before importing anything that uses models.
django_asgi_app = get_asgi_application()

from chat.routing import websocket_urlpatterns  # noqa: E402

from achannels.auth import AuthMiddlewareStack  # noqa: E402
from achannels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from achannels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
