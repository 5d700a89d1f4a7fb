"""The sample project's Django test suite (run by ``manage.py test``).

``tests/django/test_project.py`` runs each module in its own subprocess, so
the pytest process never configures Django.
"""
