"""A WSGI handler that serves data URLs without Django's middleware and URL resolution.

Chunk requests are the embedded server's hot path: Neuroglancer asks for hundreds per view.
They need none of the middleware (no CSRF on GET, no messages, no clickjacking header) and no
URL resolution beyond two fixed patterns, so this handler recognises ``/data/<slug>/<path>`` and
``/s/<token>/data/<slug>/<path>`` itself and calls the same view code
(:func:`webapp.datasets.serving.serve_data`); the session is only opened when the dataset is not
public and the session cookie's user is not already in the access cache. A NUL character in the
path, query or a header is refused with a 400 here too (``webapp.core.middleware``). Every other
URL goes through Django as usual. Request signals still fire, so database connections are managed as
for any request.
"""

from __future__ import annotations

import re
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject

from webapp.core.middleware import nul_refusal
from webapp.datasets.serving import serve_data

_SLUG = r"(?P<slug>[-a-zA-Z0-9_]+)"
DATA_URL_RE = re.compile(rf"^/(?:s/(?P<token>[^/]+)/)?data/{_SLUG}/(?P<path>.+)$")


class DataFastPathHandler(WSGIHandler):
    """Django's WSGI handler with a direct route for data files."""

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        match = DATA_URL_RE.match(request.path_info)
        if match is None:
            return super().get_response(request)
        refusal = nul_refusal(request)
        if refusal is not None:
            return refusal
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if session_key:
            engine = import_module(settings.SESSION_ENGINE)
            request.session = engine.SessionStore(session_key)
            # A lazy user, as Django's AuthenticationMiddleware sets it (a proxy the stubs
            # cannot express as a User).
            request.user = SimpleLazyObject(lambda: get_user(request))  # type: ignore[assignment]
        else:
            request.user = AnonymousUser()
        response = serve_data(request, match["slug"], match["path"], match["token"])
        response["X-Content-Type-Options"] = "nosniff"
        return response
