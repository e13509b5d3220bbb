"""Errors the dataset services raise: the shared domain errors, plus ImportRejected.

The statuses they answer with are decided once, in :mod:`webapp.core.errors`.
"""

from __future__ import annotations

from webapp.core.errors import Conflict, InvalidRequest, NotAllowed, NotFound, TooLarge
from webapp.core.errors import DomainError as ServiceError

__all__ = [
    "Conflict",
    "ImportRejected",
    "InvalidRequest",
    "NotAllowed",
    "NotFound",
    "ServiceError",
    "TooLarge",
]


class ImportRejected(InvalidRequest):
    """An import's input was refused before any work started (HTTP 400)."""
