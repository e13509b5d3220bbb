"""Serve the Neuroglancer client bundled in the ``neuroglancer`` wheel.

The wheel's client is the Python-integration build: it only starts when its URL path looks like
``<prefix>/v/<token>/`` and then talks to ``<prefix>/events/<token>`` and friends (see
``webapp.viewer.events``). We serve it under ``/neuroglancer/v/<token>/`` on the site's own origin
so the viewer page can reach ``iframe.contentWindow.viewer`` and data requests carry the session.

``index.html`` is served with ``neuroglancer_shim.js`` inlined before the client's scripts: it
answers the client's Python-server channel (event stream, state POSTs) in the browser, so an open
viewer holds no connection to the site.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.utils.http import http_date, parse_http_date_safe
from django.views.decorators.http import require_safe
from django.views.static import serve

NEUROGLANCER_TOKEN = "annotome"
NEUROGLANCER_PREFIX = "/neuroglancer"
# Webpack names its chunks "<name>.<16 hex>.<ext>" or "<16 hex>.wasm": safe to cache forever.
_HASHED_ASSET = re.compile(r"(^|\.)[0-9a-f]{16}\.(js|css|wasm|map)$")
_CONTENT_TYPES = {".map": "application/json", ".wasm": "application/wasm"}
SHIM_PATH = Path(__file__).with_name("neuroglancer_shim.js")
_HEAD_ANCHOR = "</title>"


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


@lru_cache(maxsize=1)
def index_html() -> tuple[bytes, float]:
    """The client's ``index.html`` with the shim inlined ahead of its scripts, and its mtime."""
    index = client_dir() / "index.html"
    html = index.read_text(encoding="utf-8")
    if _HEAD_ANCHOR not in html:
        raise RuntimeError(f"Unexpected Neuroglancer index.html (no {_HEAD_ANCHOR}): {index}")
    shim = SHIM_PATH.read_text(encoding="utf-8")
    html = html.replace(_HEAD_ANCHOR, f"{_HEAD_ANCHOR}<script>\n{shim}</script>", 1)
    mtime = max(index.stat().st_mtime, SHIM_PATH.stat().st_mtime)
    return html.encode("utf-8"), mtime


def _index_response(request: HttpRequest) -> HttpResponse:
    body, mtime = index_html()
    since = parse_http_date_safe(request.META.get("HTTP_IF_MODIFIED_SINCE", ""))
    if since is not None and int(mtime) <= since:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Last-Modified"] = http_date(mtime)
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
def client_file(request: HttpRequest, token: str, path: str = "") -> HttpResponseBase:
    """One file of the client; the empty path is ``index.html`` (with the shim)."""
    if token != NEUROGLANCER_TOKEN:
        raise Http404("Unknown viewer token.")
    if path in ("", "index.html"):
        return _index_response(request)
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
