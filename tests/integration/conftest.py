"""Integration tests: a real Celery worker (``celery_worker``, from ``tests/celery_fixtures.py``).

The fixture is a plugin of the root ``tests/conftest.py`` so the browser tests can use it too;
the worker process handling is in ``celery_harness.py`` next to this file.
"""
