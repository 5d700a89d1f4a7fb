"""The Django application the session and auth security tests serve.

Configured from the environment, so two servers can run it with different
secrets against one database:

- ``SECURITY_SECRET_KEY``: Django's ``SECRET_KEY``;
- ``SECURITY_DB``: path of the SQLite database;
- ``SECURITY_SESSION_ENGINE``: ``SESSION_ENGINE``.

``python -m tests.apps.security_app`` creates the tables and the user
``alice``. Routes: ``login/`` (HTTP) logs ``alice`` in and answers with the
session cookie; ``ws/whoami/`` reports ``scope["user"]`` and closes.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

import django

settings.configure(
    SECRET_KEY=os.environ["SECURITY_SECRET_KEY"],
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["SECURITY_DB"],
        }
    },
    SESSION_ENGINE=os.environ["SECURITY_SESSION_ENGINE"],
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    USE_TZ=True,
)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from achannels.auth import AuthMiddlewareStack, login  # noqa: E402
from achannels.db import database_sync_to_async  # noqa: E402
from achannels.generic.http import AsyncHttpConsumer  # noqa: E402
from achannels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from achannels.routing import ProtocolTypeRouter, URLRouter, path  # noqa: E402


class WhoAmI(AsyncJsonWebsocketConsumer):
    """Tells the client who it is to the server, then closes."""

    async def connect(self) -> None:
        await self.accept()
        user = self.scope["user"]
        await self.send_json(
            {
                "username": user.get_username() if user.is_authenticated else None,
                "authenticated": bool(user.is_authenticated),
            }
        )
        await self.close()


class Login(AsyncHttpConsumer):
    """Logs ``alice`` in; the session middleware sets the cookie."""

    async def handle(self, body: bytes) -> None:
        user: Any = await database_sync_to_async(get_user_model().objects.get)(
            username="alice"
        )
        await login(
            self.scope, user, backend="django.contrib.auth.backends.ModelBackend"
        )
        await self.send_response(200, b"logged in")


application = ProtocolTypeRouter(
    {
        "websocket": AuthMiddlewareStack(
            URLRouter([path("ws/whoami/", WhoAmI.as_asgi())])
        ),
        "http": AuthMiddlewareStack(URLRouter([path("login/", Login.as_asgi())])),
    }
)


def main() -> None:
    """Create the tables and the user ``alice``."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    users: Any = get_user_model().objects
    users.create_user("alice", password="wonderland")


if __name__ == "__main__":
    main()
