"""Object permissions of the datasets API.

Querysets already hold only what the caller may see (so anything else answers 404); these
classes then decide writes, answering 403 to someone who sees a dataset but does not own it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.datasets.models import Dataset
from webapp.datasets.selectors import datasets_editable_by


def can_edit_dataset(user: Any, dataset: Dataset) -> bool:
    """Owner or superuser."""
    return datasets_editable_by(user).filter(id=dataset.id).exists()


class DatasetWriteByOwner(BasePermission):
    """Anyone who sees the dataset may read it; only its owner (or a superuser) may change it."""

    message = "Only the dataset's owner can change it."

    def has_object_permission(self, request: Request, view: APIView, obj: Dataset) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return can_edit_dataset(request.user, obj)


class DatasetOwnerOnly(BasePermission):
    """Reads and writes both need the owner (share links are the owner's business)."""

    message = "Only the dataset's owner can manage its share links."

    def has_object_permission(self, request: Request, view: APIView, obj: Dataset) -> bool:
        return can_edit_dataset(request.user, obj)
