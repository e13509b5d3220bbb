"""Domain errors every app's services raise, and the one mapping from errors to HTTP statuses.

A service refuses a request by raising one of these with a message meant for a person; it never
builds an HTTP answer. The API's exception handler (:mod:`webapp.core.api_errors`) asks
:func:`http_status_for` for the status, so no view maps errors itself. The science core's
``PipelineError`` (bad input files or parameters) is mapped here too: it always means 400.
Commands print the same messages (``CommandError(str(exc))``).
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.errors import PipelineError


class DomainError(Exception):
    """A request a service refuses; ``str(exc)`` says why and what to do instead."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"
    default_message: ClassVar[str] = "The request is invalid."

    def __init__(self, message: str = "", **extra: object) -> None:
        super().__init__(message or self.default_message)
        # Facts the client acts on, added to the error body beside ``message`` (e.g. a stale
        # write's 409 names the current version).
        self.extra: dict[str, object] = extra


class InvalidRequest(DomainError):
    """The request's values are invalid (HTTP 400)."""


class NotAllowed(DomainError):
    """The user may see the object but not do this to it (HTTP 403)."""

    status_code = 403
    code = "permission_denied"
    default_message = "You may not do this."


class NotFound(DomainError):
    """No such object, or the user may not see it: the two are never told apart (HTTP 404)."""

    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(DomainError):
    """The object's state forbids the change, e.g. cancelling a finished job (HTTP 409)."""

    status_code = 409
    code = "conflict"
    default_message = "The object's state forbids this change."


class TooLarge(DomainError):
    """The request body is larger than this site accepts (HTTP 413)."""

    status_code = 413
    code = "too_large"
    default_message = "The request is too large."


def http_status_for(exc: BaseException) -> int | None:
    """The HTTP status that answers ``exc``, or None when it is not a domain error (a bug: 500)."""
    if isinstance(exc, DomainError):
        return exc.status_code
    if isinstance(exc, PipelineError):
        return InvalidRequest.status_code
    return None


def error_code_for(exc: BaseException) -> str:
    """A short machine-readable code for a domain error (DRF's ``default_code`` style)."""
    return exc.code if isinstance(exc, DomainError) else InvalidRequest.code
