"""Removing painted-label chunk blobs that no version refers to any more.

A labels save writes its blobs before it records its version, so a save that lost the race (409)
or failed leaves blobs behind; a deleted campaign leaves its whole folder. Versions are never
deleted, so every blob named by a stored manifest stays. Young blobs are kept whatever their state
(``min_age_s``): they may belong to a save still in progress.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache

from webapp.annotation.models import AnnotationCampaign, BoxLabelTruth, Revision
from webapp.annotation.selectors import label_blobs

logger = logging.getLogger(__name__)
# A campaign's blobs are collected at most this often, by a job queued after a labels save.
GC_EVERY_SECONDS = 3600

_CAMPAIGN_DIR = re.compile(r"campaign-(\d+)")

# Other stores of manifests (e.g. accepted ground truth) register a function giving a campaign's
# manifests, so their blobs count as live.
LiveManifests = Callable[[int], Iterable[Any]]
_live_sources: list[LiveManifests] = []


def register_live_manifests(source: LiveManifests) -> None:
    if source not in _live_sources:
        _live_sources.append(source)


def _revision_manifests(campaign_id: int) -> Iterable[Any]:
    return (
        Revision.objects.filter(assignment__box__campaign_id=campaign_id, labels__isnull=False)
        .values_list("labels", flat=True)
        .iterator(chunk_size=500)
    )


register_live_manifests(_revision_manifests)


def live_blob_keys(campaign_id: int) -> set[str]:
    """Every blob key named by a stored manifest of the campaign."""
    live: set[str] = set()
    for source in _live_sources:
        for manifest in source(campaign_id):
            chunks = manifest.get("chunks", {}) if isinstance(manifest, dict) else {}
            live.update(str(key) for key in chunks.values())
    return live


@dataclass(frozen=True)
class GcResult:
    blobs_removed: int
    campaign_dirs_removed: int


def annotation_root() -> Path:
    return Path(settings.DATA_ROOT) / "annotation"


def labels_gc(campaign_id: int | None = None, min_age_s: float = 3600.0) -> GcResult:
    """Delete unreferenced blobs (of one campaign, or of all) and the folders of deleted
    campaigns; ``min_age_s`` protects blobs of saves in progress."""
    existing = set(AnnotationCampaign.objects.values_list("pk", flat=True))
    wanted = existing if campaign_id is None else {campaign_id} & existing
    removed = 0
    for pk in sorted(wanted):
        removed += label_blobs(pk).remove_unreferenced(live_blob_keys(pk), min_age_s=min_age_s)
    dirs = 0
    root = annotation_root()
    if campaign_id is None and root.is_dir():
        for entry in root.iterdir():
            match = _CAMPAIGN_DIR.fullmatch(entry.name)
            if match and entry.is_dir() and int(match.group(1)) not in existing:
                shutil.rmtree(entry, ignore_errors=True)
                dirs += 1
    return GcResult(removed, dirs)


def _truth_manifests(campaign_id: int) -> Iterable[Any]:
    return BoxLabelTruth.objects.filter(box__campaign_id=campaign_id).values_list(
        "labels", flat=True
    )


register_live_manifests(_truth_manifests)


def labels_gc_soon(campaign_id: int) -> None:
    """Queue a GC of the campaign's blobs, at most once per ``GC_EVERY_SECONDS`` (the labels
    save calls this: a campaign being painted is collected hourly, an idle one needs none)."""
    if not cache.add(f"annotation:labels-gc:{campaign_id}", 1, GC_EVERY_SECONDS):
        return
    from webapp.annotation.tasks import labels_gc_task  # the task module imports this one

    try:
        labels_gc_task.delay(campaign_id)
    except Exception:  # a save must never fail because housekeeping could not be queued
        logger.exception("could not queue the label blob GC of campaign %s", campaign_id)
