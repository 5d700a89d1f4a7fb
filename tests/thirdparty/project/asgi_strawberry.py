"""strawberry's own ``GraphQLProtocolTypeRouter`` as the whole application."""

import os
import warnings

import achannels

warnings.filterwarnings("ignore", category=achannels.ChannelsInstalledWarning)
achannels.install_as_channels()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.thirdparty.project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from strawberry.channels import GraphQLProtocolTypeRouter  # noqa: E402

from .schema import schema  # noqa: E402

application = GraphQLProtocolTypeRouter(schema, django_application=django_application)
