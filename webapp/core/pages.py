"""The site's own error pages and favicon.

With DEBUG off (the default, also for ``make up``), Django would answer a missing page with a
bare "Not Found" and an API client with HTML. These handlers answer pages with the site's
templates and ``/api/`` paths with the same JSON ``{"message": ...}`` the API's errors use.
"""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

API_PREFIX = "/api/"
FAVICON = Path(__file__).resolve().parent / "static" / "core" / "favicon.ico"


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: the site's page, or JSON under /api/."""
    if _wants_json(request):
        return JsonResponse(
            {"message": f"Nothing here: {request.path} is not an API endpoint. See /api/v1/."},
            status=404,
        )
    template = loader.get_template("404.html")
    return HttpResponse(template.render({"path": request.path}, request), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: a page that needs no database or context (the error may be theirs)."""
    if _wants_json(request):
        return JsonResponse(
            {"message": "The server failed to answer this request; the error has been logged."},
            status=500,
        )
    return HttpResponse(loader.get_template("500.html").render(), status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 from Django itself (a disallowed host, a malformed request)."""
    if _wants_json(request):
        return JsonResponse({"message": "The request is malformed."}, status=400)
    return HttpResponse(loader.get_template("400.html").render(), status=400)


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> FileResponse:
    """``/favicon.ico``, which browsers ask for on every page without a declared icon."""
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
