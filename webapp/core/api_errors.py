"""JSON errors a person can act on, for every API failure: DRF's ``EXCEPTION_HANDLER``.

Every error body is ``{"message": "..."}``, plus ``errors`` (DRF's per-field details) for
validation errors. Domain errors and pipeline errors get their status from the one mapping in
:mod:`webapp.core.errors`, so views raise them (or let services raise them) and map nothing.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from webapp.core.errors import DomainError, error_code_for, http_status_for


def as_api_exception(exc: Exception) -> Exception:
    """``exc`` as a DRF exception when it is a domain or pipeline error, else ``exc`` itself."""
    status = http_status_for(exc)
    if status is None:
        return exc
    api_exc = exceptions.APIException(str(exc), code=error_code_for(exc))
    api_exc.status_code = status
    return api_exc


def error_body(data: Any) -> dict[str, Any]:
    """``{"message": ...}`` (and ``errors`` when DRF gave field details) from DRF's error data."""
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        return {"message": str(data["detail"])}
    if isinstance(data, dict):
        parts = []
        for field, errors in data.items():
            text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return {"message": " ".join(parts), "errors": data}
    return {"message": "; ".join(str(e) for e in data), "errors": data}


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler after the domain-error mapping, with a top-level ``message`` in every body."""
    response = exception_handler(as_api_exception(exc), context)
    if response is None:
        return None
    response.data = error_body(response.data)
    if isinstance(exc, DomainError):
        response.data.update(exc.extra)
    return response
