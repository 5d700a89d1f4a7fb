"""The Django project third-party packages run in, unchanged, on achannels.

Its ``settings.py`` and ``asgi.py`` call ``achannels.install_as_channels()``
first, as a migrating project would; everything else is written for Channels.
"""
