"""Domain errors raised by the dataset services; the API maps them to HTTP statuses."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: a request the service refuses, with a message meant for a person."""


class NotAllowed(ServiceError):
    """The user may see the object but not change it (HTTP 403)."""


class InvalidRequest(ServiceError):
    """The request's values are invalid (HTTP 400)."""


class ImportRejected(InvalidRequest):
    """An import's input was refused before any work started (HTTP 400)."""


class Conflict(ServiceError):
    """The object is in a state that forbids the change, e.g. cancelling a finished job (409)."""
