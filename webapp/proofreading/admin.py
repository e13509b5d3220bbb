"""Admin: campaigns and members editable; verdicts, history and claims read-only (the history
is append-only, and verdicts change only through the services, which keep it)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from webapp.proofreading.models import (
    CampaignItem,
    CampaignMember,
    MissedObject,
    ProofreadingCampaign,
    ReviewEvent,
    Verdict,
)

M = TypeVar("M", bound=Model)


class MemberInline(admin.TabularInline[CampaignMember, ProofreadingCampaign]):
    model = CampaignMember
    extra = 0
    raw_id_fields = ("user", "added_by")


@admin.register(ProofreadingCampaign)
class CampaignAdmin(admin.ModelAdmin[ProofreadingCampaign]):
    list_display = ("id", "name", "layer", "state", "selection", "reviewers_per_item", "n_items")
    list_filter = ("state", "selection", "order")
    search_fields = ("name", "layer__dataset__slug")
    raw_id_fields = ("layer", "created_by")
    readonly_fields = ("selection", "selection_params", "order", "order_seed", "n_items")
    inlines = [MemberInline]


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CampaignItem)
class ItemAdmin(ReadOnlyAdmin[CampaignItem]):
    list_display = ("id", "campaign", "segment_id", "queue_key", "status", "verdict")
    list_filter = ("status",)
    raw_id_fields = ("campaign", "detection")


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin[Verdict]):
    list_display = (
        "id",
        "campaign",
        "item",
        "reviewer",
        "round",
        "verdict",
        "seconds",
        "undone_at",
    )
    list_filter = ("round", "verdict")


@admin.register(ReviewEvent)
class EventAdmin(ReadOnlyAdmin[ReviewEvent]):
    list_display = ("id", "campaign", "item", "actor", "action", "round", "before", "after")
    list_filter = ("action",)


@admin.register(MissedObject)
class MissedObjectAdmin(ReadOnlyAdmin[MissedObject]):
    list_display = ("id", "campaign", "z", "y", "x", "created_by", "created")
