"""Connection security: origin checks for WebSockets (see ``.websocket``)."""

__all__: list[str] = []
