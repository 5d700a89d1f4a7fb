"""Settings of the third-party project, chosen by the environment.

``THIRDPARTY_DB``: the SQLite file of the default database (in the test's
tmp dir, shared by ``migrate`` and the server). ``THIRDPARTY_PG_DB``: when
set, channels-postgres is installed and is the default channel layer, on this
PostgreSQL database. ``THIRDPARTY_REDIS_URL`` (with
``THIRDPARTY_REDIS_PREFIX``): the layer is channels_redis's, by its
``BACKEND`` string. Otherwise the layer is Channels' in-memory one.
"""

import os
import warnings

import achannels

# The real channels is installed next to achannels (DCRF, channels-postgres and
# channels-redis depend on it): shadowing it is the point of this project.
warnings.filterwarnings("ignore", category=achannels.ChannelsInstalledWarning)
achannels.install_as_channels()

SECRET_KEY = "thirdparty-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.thirdparty.project.urls"
ASGI_APPLICATION = "tests.thirdparty.project.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# "channels" as Channels users write it: the app is achannels' own.
INSTALLED_APPS = ["channels", "django.contrib.auth", "django.contrib.contenttypes"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("THIRDPARTY_DB", ":memory:"),
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

if os.environ.get("THIRDPARTY_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ["THIRDPARTY_REDIS_URL"]],
                "prefix": os.environ["THIRDPARTY_REDIS_PREFIX"],
            },
        }
    }

if os.environ.get("THIRDPARTY_PG_DB"):
    INSTALLED_APPS.append("channels_postgres")
    DATABASES["channels_postgres"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["THIRDPARTY_PG_DB"],
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": os.environ.get("THIRDPARTY_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("THIRDPARTY_PG_PORT", "5432"),
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_postgres.core.PostgresChannelLayer",
            # channels-postgres hands CONFIG to Django's DatabaseWrapper, which
            # needs every key of a normalised DATABASES entry.
            "CONFIG": {
                **DATABASES["channels_postgres"],
                "TIME_ZONE": None,
                "OPTIONS": {},
                "CONN_MAX_AGE": 0,
                "CONN_HEALTH_CHECKS": False,
                "AUTOCOMMIT": True,
                "ATOMIC_REQUESTS": False,
            },
        }
    }
    # Its migrations are PostgreSQL-only SQL and it ships no router.
    DATABASE_ROUTERS = ["tests.thirdparty.project.routers.ChannelsPostgresRouter"]
