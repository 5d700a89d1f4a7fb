"""A minimal Django site whose sync code publishes to a channel layer.

``PUB_LAYER`` (``memory``, ``core``, ``pubsub``), ``PUB_REDIS_URL`` and
``PUB_PREFIX`` choose the layer.
"""

import os

SECRET_KEY = "publisher-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["achannels", "pubsite"]
ROOT_URLCONF = "pubsite.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
ASGI_APPLICATION = "pubsite.asgi.application"
WSGI_APPLICATION = "pubsite.wsgi.application"

_KIND = os.environ.get("PUB_LAYER", "memory")
if _KIND == "memory":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "achannels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": {
                "core": "achannels.layers.redis.RedisChannelLayer",
                "pubsub": "achannels.layers.redis.RedisPubSubChannelLayer",
            }[_KIND],
            "CONFIG": {
                "hosts": [os.environ["PUB_REDIS_URL"]],
                "prefix": os.environ["PUB_PREFIX"],
                "capacity": 1000,
            },
        }
    }
