"""Saved viewer states behind "copy link" URLs."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from webapp.core.permissions import RestrictedByParent


def new_state_key() -> str:
    return secrets.token_urlsafe(9)


class SavedStateQuerySet(RestrictedByParent["SavedState"]):
    """A saved view is readable by whoever may view its dataset."""

    parent_field = "dataset"
    parent_actions = {"view": "view"}


class SavedState(models.Model):
    key = models.CharField(max_length=32, unique=True, default=new_state_key)
    dataset = models.ForeignKey(
        "datasets.Dataset", on_delete=models.CASCADE, related_name="saved_states"
    )
    state = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = SavedStateQuerySet.as_manager()
