"""Settings for ``python -m webapp.embedded`` under test: the embedded settings, plus the test
tasks module, whose ``ANNOTOME_TEST_PROGRESS_DELAY`` hook slows job progress reports down so a
test can act while a job runs (the worker loads it through Celery's ``imports``)."""

from webapp.settings.dev import *  # noqa: F403

CELERY_IMPORTS = ("worker_test_tasks",)
