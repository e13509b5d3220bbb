"""Refuse, at the edge, request parts no view can use: NUL characters.

PostgreSQL cannot store or compare text with a NUL character, so ``?search=a%00b`` or
``/s/<token>%00/data/...`` would fail deep inside a query with a 500 (SQLite lets them through,
so tests on SQLite alone never see it). A NUL is never meaningful in a path, a query string or a
header of this site, so such requests get a 400 before any view runs. A cookie holding a NUL
(the site never sets one) is dropped rather than refused, so a stray cookie cannot lock a
browser out. JSON bodies are checked by :class:`webapp.core.parsers.StrictJSONParser`.

The data fast path (``webapp.datasets.data_wsgi``) skips middleware and calls
:func:`nul_refusal` itself.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

NUL = "\x00"
MESSAGE = "The request contains a NUL character (%00) in its {where}; remove it."


def _where_nul(request: HttpRequest) -> str | None:
    if NUL in request.path_info or NUL in request.path:
        return "path"
    query = request.META.get("QUERY_STRING", "")
    if "%00" in query or NUL in query:
        return "query string"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and key != "HTTP_COOKIE" and NUL in str(value):
            return f"{key[5:].replace('_', '-').title()} header"
    return None


def drop_nul_cookies(request: HttpRequest) -> None:
    """Forget cookies whose name or value holds a NUL (after Python's unquoting, ``\\000``)."""
    cookies = request.COOKIES
    if any(NUL in name or NUL in value for name, value in cookies.items()):
        request.COOKIES = {k: v for k, v in cookies.items() if NUL not in k and NUL not in v}


def nul_refusal(request: HttpRequest) -> HttpResponse | None:
    """A 400 answer when the request has a NUL in its path, query string or a header, else None.

    API paths get the API's JSON error body; other paths a plain-text message.
    """
    where = _where_nul(request)
    if where is None:
        drop_nul_cookies(request)
        return None
    message = MESSAGE.format(where=where)
    if request.path_info.startswith("/api/"):
        return JsonResponse({"message": message}, status=400)
    return HttpResponse(message + "\n", status=400, content_type="text/plain; charset=utf-8")


class RejectNulMiddleware:
    """First middleware: :func:`nul_refusal` for every request that goes through Django."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        refusal = nul_refusal(request)
        return refusal if refusal is not None else self.get_response(request)
