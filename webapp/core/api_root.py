"""``GET /api/v1/``: every endpoint of the API, so a person or a client can find its way."""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

API_PREFIX = "api/v1/"
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _routes(patterns: list[Any], prefix: str) -> list[tuple[str, str]]:
    """(name, route with ``{param}`` placeholders) of every named pattern below ``prefix``."""
    found: list[tuple[str, str]] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_routes(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append((pattern.name, _CONVERTER.sub(r"{\1}", route)))
    return found


def api_endpoints() -> list[tuple[str, str]]:
    """Named API routes under ``/api/v1/`` in URLconf order, e.g. ``("api-dataset-list", ...)``."""
    routes = _routes(get_resolver().url_patterns, "")
    return [(name, "/" + route) for name, route in routes if route.startswith(API_PREFIX)]


class ApiRootView(APIView):
    """The API's endpoints by name (``{param}`` marks a path parameter), with schema and docs."""

    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            fields={
                "schema": serializers.URLField(),
                "docs": serializers.URLField(),
                "endpoints": serializers.DictField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        base = request.build_absolute_uri("/").rstrip("/")
        endpoints = {
            name.removeprefix("api-"): base + route
            for name, route in api_endpoints()
            if name != "api-root"
        }
        return Response(
            {"schema": base + "/api/schema/", "docs": base + "/api/docs/", "endpoints": endpoints}
        )
