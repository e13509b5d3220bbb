"""WSGI entry point (gunicorn): Django, with a direct route for data files.

``ANNOTOME_DATA_FAST_PATH=0`` sends data URLs through Django's middleware and URL resolver
like every other URL (bench/serve.py --compare-workers measures both).
"""

import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.dev")
django.setup(set_prefix=False)

from webapp.datasets.data_wsgi import DataFastPathHandler  # noqa: E402

application: WSGIHandler = (
    WSGIHandler()
    if os.environ.get("ANNOTOME_DATA_FAST_PATH", "1") == "0"
    else DataFastPathHandler()
)
