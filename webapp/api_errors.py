"""JSON errors a person can act on, for every API failure."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a top-level ``message`` added to every error body."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        body: dict[str, Any] = {"message": str(data["detail"])}
    elif isinstance(data, dict):
        parts = []
        for field, errors in data.items():
            text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        body = {"message": " ".join(parts), "errors": data}
    else:
        body = {"message": "; ".join(str(e) for e in data), "errors": data}
    response.data = body
    return response
