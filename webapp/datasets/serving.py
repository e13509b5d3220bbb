"""Data views for Neuroglancer: a dataset's zarr metadata, chunks, meshes and segment properties.

``/data/<slug>/<path>`` (public data, or the signed-in user's) and ``/s/<token>/data/<slug>/<path>``
(share links; Neuroglancer cannot add headers, so the token travels in the path). Every request
is checked by :mod:`webapp.datasets.data_access`; refusals answer 404 like absent files.

In production nginx serves these URLs itself and asks :func:`data_auth` once per cache period
(``docker/nginx/annotome.conf.template``); these views are the embedded server's path.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from webapp.datasets.data_access import DataAccess, data_access, data_cache_control
from webapp.datasets.file_responses import file_response, store_path_segments

ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS")
EXPOSED_HEADERS = "ETag, Last-Modified, Content-Length, Content-Range, Accept-Ranges"
ALLOWED_REQUEST_HEADERS = "Range, If-None-Match, If-Modified-Since, If-Range, Cache-Control"


def cors_headers(request: HttpRequest) -> dict[str, str]:
    """CORS headers for a data response, per ``DATA_CORS_ORIGINS`` ("*" allows any origin)."""
    allowed = settings.DATA_CORS_ORIGINS
    if "*" in allowed:
        return {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        }
    origin = request.META.get("HTTP_ORIGIN")
    if origin and origin in allowed:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            "Vary": "Origin",
        }
    return {}


def _preflight(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(status=204)
    headers = cors_headers(request)
    if headers:
        headers.pop("Access-Control-Expose-Headers", None)
        headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
        headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
        headers["Access-Control-Max-Age"] = "86400"
    headers["Allow"] = ", ".join(ALLOWED_METHODS)
    for name, value in headers.items():
        response[name] = value
    return response


def _not_found(request: HttpRequest, status: int = 404) -> HttpResponse:
    response = HttpResponse(b"Not found\n", status=status, content_type="text/plain")
    for name, value in cors_headers(request).items():
        response[name] = value
    return response


def serve_data(request: HttpRequest, slug: str, path: str, token: str | None) -> HttpResponseBase:
    """A data file of ``slug`` (through share link ``token`` when given), access checked."""
    if request.method == "OPTIONS":
        return _preflight(request)
    if request.method not in ("GET", "HEAD"):
        refusal = HttpResponse(status=405)
        refusal["Allow"] = ", ".join(ALLOWED_METHODS)
        return refusal
    segments = store_path_segments(path)
    if segments is None:
        return _not_found(request)
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    access: DataAccess | None = data_access(slug, request.user, token, session_key=session_key)
    if access is None:
        return _not_found(request)
    headers = cors_headers(request)
    headers["Cache-Control"] = data_cache_control(access)
    response = file_response(request, access.dataset.root.joinpath(*segments), headers)
    return response if response is not None else _not_found(request)


@csrf_exempt
def data_file(request: HttpRequest, slug: str, path: str) -> HttpResponseBase:
    """A file of dataset ``slug`` for a signed-in user or, for public datasets, anyone."""
    return serve_data(request, slug, path, None)


@csrf_exempt
def shared_data_file(request: HttpRequest, token: str, slug: str, path: str) -> HttpResponseBase:
    """A file of dataset ``slug`` through share link ``token`` (only that link's dataset)."""
    return serve_data(request, slug, path, token)


@csrf_exempt
def data_auth(request: HttpRequest) -> HttpResponse:
    """nginx ``auth_request`` target: may this request read dataset ``X-Data-Slug``?

    nginx sends the slug and the share token (empty for ``/data/``) as headers plus the client's
    cookies; 204 allows (with ``X-Data-Cache-Control`` for the file response), 403 refuses (nginx
    answers 404 to the client). The answer reveals no more than the data URL itself would, so
    the endpoint needs no secret; nginx still refuses ``/internal/`` from outside.
    """
    slug = request.META.get("HTTP_X_DATA_SLUG", "")
    token = request.META.get("HTTP_X_SHARE_TOKEN", "")
    access = data_access(slug, request.user, token or None, use_cache=False) if slug else None
    if access is None:
        return HttpResponse(status=403)
    response = HttpResponse(status=204)
    response["X-Data-Cache-Control"] = data_cache_control(access)
    return response
