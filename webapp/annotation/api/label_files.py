"""The plumbing shared by the painted labels' read-only files (OME-Zarr versions, chunk blobs,
meshes, consensus volumes): GET/HEAD only, the caller by session or API token, 404 for anything
not theirs, immutable caching and CORS (Neuroglancer reads them like the datasets' ``/data/``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from webapp.annotation import selectors
from webapp.annotation.models import Assignment
from webapp.datasets.serving import cors_headers

IMMUTABLE = "private, max-age=31536000, immutable"


def with_cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    for name, value in cors_headers(request).items():
        response[name] = value
    return response


def not_found(request: HttpRequest) -> HttpResponse:
    return with_cors(request, HttpResponse(b"Not found\n", status=404, content_type="text/plain"))


def method_refused(request: HttpRequest) -> HttpResponse | None:
    """405 for anything but GET and HEAD (the files are read-only); None when allowed."""
    if request.method in ("GET", "HEAD"):
        return None
    refusal = HttpResponse(status=405)
    refusal["Allow"] = "GET, HEAD"
    return refusal


def reader(request: HttpRequest) -> Any:
    """The signed-in caller: the session's user, or an API token's (scripts reading labels);
    None when there is neither."""
    user: Any = request.user
    if not user.is_authenticated and "HTTP_AUTHORIZATION" in request.META:
        try:
            found = TokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            return None
        user = None if found is None else found[0]
    return user if user is not None and user.is_authenticated else None


def visible_assignment(request: HttpRequest, assignment_id: int) -> Assignment | None:
    user = reader(request)
    return None if user is None else selectors.assignment_visible(user, assignment_id)


def file_response(request: HttpRequest, body: bytes, content_type: str) -> HttpResponse:
    """``body`` (nothing for HEAD), cached for good: what these URLs name never changes."""
    response = HttpResponse(body if request.method == "GET" else b"", content_type=content_type)
    response["Content-Length"] = str(len(body))
    response["Cache-Control"] = IMMUTABLE
    return with_cors(request, response)
