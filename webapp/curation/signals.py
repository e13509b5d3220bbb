"""Receivers: a change of an item's final verdict (or a deleted campaign) queues the rewrite
of its layer's verdict properties; the detections exports get the verdict columns."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save


def item_saved(
    sender: Any, instance: Any, created: bool, update_fields: Any, **kwargs: Any
) -> None:
    if update_fields is not None and not {"verdict", "status"} & set(update_fields):
        return
    from webapp.curation.services import verdict_properties_schedule_on_commit

    layer_id = getattr(instance, "_curation_layer_id", None)
    if layer_id is None:
        from webapp.proofreading.models import ProofreadingCampaign

        layer_id = (
            ProofreadingCampaign.objects.filter(id=instance.campaign_id)
            .values_list("layer_id", flat=True)
            .first()
        )
        if layer_id is None:
            return
        instance._curation_layer_id = layer_id
    verdict_properties_schedule_on_commit(int(layer_id))


def campaign_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from webapp.curation.services import verdict_properties_schedule_on_commit

    verdict_properties_schedule_on_commit(int(instance.layer_id))


def connect() -> None:
    from webapp.curation.selectors import detection_ids_with_verdict
    from webapp.curation.services import verdict_export_columns
    from webapp.detections.export_registry import register_export_columns
    from webapp.detections.verdict_filter import register_verdict_filter
    from webapp.proofreading.models import CampaignItem, ProofreadingCampaign

    post_save.connect(item_saved, sender=CampaignItem, dispatch_uid="curation-item-verdict")
    post_delete.connect(
        campaign_deleted, sender=ProofreadingCampaign, dispatch_uid="curation-campaign-deleted"
    )
    register_export_columns("curation-verdicts", verdict_export_columns)
    register_verdict_filter(detection_ids_with_verdict)
