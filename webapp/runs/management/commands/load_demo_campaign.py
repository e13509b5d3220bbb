"""``manage.py load_demo_campaign``: a painted annotation campaign on the demo dataset with some
boxes already painted and approved, so that a new site can try the loop at once: open the
campaign, press Retrain, watch the run, open the new layer.

The campaign ("Demo nuclei (painted)") tiles the demo image in 64^3-voxel boxes; six of them,
spread through the volume, are painted with the demo's true labels by ``demo-annotator`` (a
user who cannot sign in) and approved by the demo admin (``ensure_demo_admin``), who manages the
campaign. Run after ``load_demo`` and ``ensure_demo_admin`` (``make up`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from pipeline.ome_zarr_io import open_multiscale
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Role, TaskBox
from webapp.datasets.models import Dataset, LayerKind

DEMO_SLUG = "demo-nuclei"
DEMO_ANNOTATOR = "demo-annotator"  # who painted the approved boxes (cannot sign in)
NAME = "Demo nuclei (painted)"
BOX_VOXELS = 64
APPROVED = 6


class Command(BaseCommand):
    help = "Create the demo's painted campaign with approved boxes (see the module docstring)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default="admin", help="The campaign's manager.")
        parser.add_argument(
            "--if-absent", action="store_true", help="Do nothing if the campaign exists."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dataset = Dataset.objects.filter(slug=DEMO_SLUG).first()
        if dataset is None:
            raise CommandError("No demo dataset: run manage.py load_demo first.")
        existing = AnnotationCampaign.objects.filter(dataset=dataset, name=NAME).first()
        if existing is not None and options["if_absent"]:
            self.stdout.write(f"Demo campaign already present: /annotation/{existing.pk}/")
            return
        users = get_user_model().objects
        admin = users.filter(username=options["admin"]).first()
        if admin is None:
            raise CommandError("Run manage.py ensure_demo_admin first.")
        annotator, created = users.get_or_create(username=DEMO_ANNOTATOR)
        if created:
            annotator.set_unusable_password()
            annotator.save(update_fields=["password"])
        image = dataset.layers.get(kind=LayerKind.IMAGE, name="image")
        truth_layer = dataset.layers.filter(kind=LayerKind.SEGMENTATION, name="nuclei").first()
        if truth_layer is None:
            raise CommandError("The demo dataset has no 'nuclei' labels to paint with.")
        truth = open_multiscale(dataset.root / truth_layer.path).levels[0]
        voxel_um = [v / 1000.0 for v in image.voxel_size]
        with transaction.atomic():
            if existing is not None:
                existing.delete()
            spec = services.CampaignSpec(
                name=NAME,
                instructions=(
                    "Paint every nucleus in the box. Six boxes come painted and approved (from "
                    "the demo's true labels), so **Retrain** works at once; the others are yours."
                ),
                box_size_um=[BOX_VOXELS * v for v in voxel_um],
                painted=True,
            )
            campaign = services.campaign_create(admin, dataset, image, spec)
            services.member_add(campaign, admin, annotator.username, Role.ANNOTATOR)
            services.member_add(campaign, admin, admin.username, Role.REVIEWER)
            boxes = services.boxes_tile(campaign, admin)
            # Spread the approved ones through the volume: handed out first by priority.
            chosen = np.linspace(0, len(boxes) - 1, min(APPROVED, len(boxes))).round()
            TaskBox.objects.filter(pk__in=[boxes[int(i)].pk for i in chosen]).update(priority=1)
            for _ in range(len(chosen)):
                row = services.next_task(campaign, annotator)
                assert row is not None
                region = tuple(
                    slice(int(a), int(a) + int(n))
                    for a, n in zip(row.box.start, row.box.size, strict=True)
                )
                labels = np.asarray(truth[region]).astype(np.uint32)
                services.labels_save(row, annotator, row.version, _chunks(labels))
                row.refresh_from_db()
                row = services.submit(row, annotator, row.version)
                services.approve(row, admin)
        self.stdout.write(
            self.style.SUCCESS(f"Demo campaign ready: /annotation/{campaign.pk}/ ({NAME})")
        )


def _chunks(labels: np.ndarray) -> dict[tuple[int, int, int], np.ndarray]:
    """A box's labels as its 64^3 label chunks (the label store's grid)."""
    out = {}
    for z in range(0, labels.shape[0], BOX_VOXELS):
        for y in range(0, labels.shape[1], BOX_VOXELS):
            for x in range(0, labels.shape[2], BOX_VOXELS):
                key = (z // BOX_VOXELS, y // BOX_VOXELS, x // BOX_VOXELS)
                out[key] = np.ascontiguousarray(
                    labels[z : z + BOX_VOXELS, y : y + BOX_VOXELS, x : x + BOX_VOXELS]
                )
    return out
