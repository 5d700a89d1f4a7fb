"""Settings for the achannels chat demo.

Everything a deployment changes comes from the environment:

- ``REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``): use the Redis channel
  layer and keep room history and presence in Redis, so several worker
  processes share rooms. Unset: the in-memory layer, one process.
- ``CHAT_REDIS_PREFIX``: key prefix in Redis (default ``achannels-chat``).
- ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG`` (``1``/``0``),
  ``DJANGO_ALLOWED_HOSTS`` (comma separated).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "demo-only-insecure-key-change-me-in-production"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"
).split(",")

INSTALLED_APPS = [
    # First, so its `runserver` (uvicorn, WebSockets) replaces Django's.
    "achannels",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chat_project.urls"
ASGI_APPLICATION = "chat_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Our own cookie name: a `sessionid` left on localhost by another Django
# project would otherwise be looked up in this project's database.
SESSION_COOKIE_NAME = "achannels_chat_session"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Relative, so Django prefixes it with the script prefix (root_path) when the
# app is served under a sub-path behind a proxy.
STATIC_URL = "static/"

# The chat keeps the last CHAT_HISTORY_SIZE messages of every room.
CHAT_HISTORY_SIZE = 50
REDIS_URL = os.environ.get("REDIS_URL", "")
CHAT_REDIS_PREFIX = os.environ.get("CHAT_REDIS_PREFIX", "achannels-chat")

CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "achannels.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHAT_REDIS_PREFIX},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"chat": {"handlers": ["console"], "level": "INFO"}},
}
