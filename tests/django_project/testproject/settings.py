"""Settings of the sample project, switchable through environment variables
so one project serves every test:

- ``TESTPROJECT_DB``: path of the SQLite database (runserver tests);
- ``TESTPROJECT_TEST_DB``: path of the SQLite *test* database (a file, so the
  live server process sees it; unique per process by default);
- ``TESTPROJECT_DEBUG``: "0" turns DEBUG off;
- ``TESTPROJECT_SESSION_ENGINE``: another ``SESSION_ENGINE``;
- ``TESTPROJECT_REDIS_URL`` (+ ``TESTPROJECT_REDIS_PREFIX``): use the Redis
  channel layer instead of the in-memory one.
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "TESTPROJECT_SECRET_KEY", "insecure-key-for-the-achannels-sample-project-only"
)
DEBUG = os.environ.get("TESTPROJECT_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "achannels",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "testproject.urls"
ASGI_APPLICATION = "testproject.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TESTPROJECT_DB") or str(BASE_DIR / "db.sqlite3"),
        "TEST": {
            "NAME": os.environ.get("TESTPROJECT_TEST_DB")
            or os.path.join(
                tempfile.gettempdir(), f"achannels-testproject-{os.getpid()}.sqlite3"
            ),
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_ENGINE = os.environ.get(
    "TESTPROJECT_SESSION_ENGINE", "django.contrib.sessions.backends.db"
)
# Fast hashing: the tests create users, nothing here protects real passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

STATIC_URL = "static/"
USE_TZ = True

if os.environ.get("TESTPROJECT_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "achannels.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ["TESTPROJECT_REDIS_URL"]],
                "prefix": os.environ.get("TESTPROJECT_REDIS_PREFIX", "asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
