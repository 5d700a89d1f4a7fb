"""The ``runserver`` and ``runworker`` commands."""

__all__: list[str] = []
