"""Keep the outer pytest run out of the sample project.

Its modules need Django settings, which must never be configured in the
pytest process (Django-free tests share it). Its Django test suite runs in
subprocesses started by ``tests/test_django_*.py``.
"""

collect_ignore_glob = ["*"]
