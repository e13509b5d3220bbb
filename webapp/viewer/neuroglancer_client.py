"""Serve the Neuroglancer client bundled in the ``neuroglancer`` wheel.

The wheel's client is the Python-integration build: it only starts when its URL path looks like
``<prefix>/v/<token>/`` and then talks to ``<prefix>/events/<token>`` and friends (see
``webapp.viewer.events``). We serve it under ``/neuroglancer/v/<token>/`` on the site's own origin
so the viewer page can reach ``iframe.contentWindow.viewer`` and data requests carry the session.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from django.views.static import serve

NEUROGLANCER_TOKEN = "annotome"
NEUROGLANCER_PREFIX = "/neuroglancer"
# Webpack names its chunks "<name>.<16 hex>.<ext>" or "<16 hex>.wasm": safe to cache forever.
_HASHED_ASSET = re.compile(r"(^|\.)[0-9a-f]{16}\.(js|css|wasm|map)$")
_CONTENT_TYPES = {".map": "application/json", ".wasm": "application/wasm"}


def neuroglancer_client_url(token: str = NEUROGLANCER_TOKEN) -> str:
    """Site-relative URL of the client's index page."""
    return f"{NEUROGLANCER_PREFIX}/v/{token}/"


@lru_cache(maxsize=1)
def client_dir() -> Path:
    """Directory holding the wheel's ``static/client`` files (without importing neuroglancer)."""
    spec = importlib.util.find_spec("neuroglancer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The neuroglancer package is not installed.")
    directory = Path(next(iter(spec.submodule_search_locations))) / "static" / "client"
    if not (directory / "index.html").is_file():
        raise RuntimeError(f"No Neuroglancer client in {directory}.")
    return directory


@require_safe
def client_file(request: HttpRequest, token: str, path: str = "") -> HttpResponse:
    """One file of the client; the empty path is ``index.html``."""
    if token != NEUROGLANCER_TOKEN:
        raise Http404("Unknown viewer token.")
    path = path or "index.html"
    # django.views.static.serve rejects traversal and answers If-Modified-Since.
    response = serve(request, path, document_root=str(client_dir()))
    suffix = Path(path).suffix
    if suffix in _CONTENT_TYPES:
        response["Content-Type"] = _CONTENT_TYPES[suffix]
    if _HASHED_ASSET.search(path):
        response["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response["Cache-Control"] = "no-cache"
    return response
