"""Django management commands: ``runserver`` (uvicorn) and ``runworker``."""

__all__: list[str] = []
