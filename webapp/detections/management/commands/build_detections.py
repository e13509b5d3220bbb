"""``manage.py build_detections [SLUG ...]``: (re)build detections tables in this process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.progress import tqdm_progress
from webapp.datasets.models import Layer, LayerKind
from webapp.detections.models import DetectionBuild, JobStatus
from webapp.detections.services import detections_build_now, detections_build_start


class Command(BaseCommand):
    help = (
        "Build the detections table of every segmentation layer (of the datasets named, or of "
        "all), here and now; --missing skips layers that have one, --queue sends them to the "
        "workers instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", metavar="SLUG", help="datasets (default: all)")
        parser.add_argument("--layer", help="only the segmentation layer of this name")
        parser.add_argument(
            "--missing", action="store_true", help="only layers without a built table"
        )
        parser.add_argument("--queue", action="store_true", help="queue builds for the workers")

    def handle(self, *args: Any, **options: Any) -> None:
        layers = Layer.objects.select_related("dataset").filter(kind=LayerKind.SEGMENTATION)
        if options["slugs"]:
            layers = layers.filter(dataset__slug__in=options["slugs"])
        if options["layer"]:
            layers = layers.filter(name=options["layer"])
        if options["missing"]:
            built = DetectionBuild.objects.filter(status=JobStatus.SUCCEEDED).values("layer_id")
            layers = layers.exclude(id__in=built)
        failed = 0
        for layer in layers.order_by("dataset__slug", "id"):
            what = f"{layer.dataset.slug}/{layer.name}"
            if options["queue"]:
                build = detections_build_start(layer, reason="command")
                self.stdout.write(f"{what}: build {build.id} queued")
                continue
            build = detections_build_now(
                layer, progress=tqdm_progress("block", {"saving": "detection"})
            )
            if build.status == JobStatus.SUCCEEDED:
                self.stdout.write(f"{what}: {build.n_detections} detections")
            else:
                failed += 1
                self.stderr.write(f"{what}: {build.status}: {build.error}")
        if failed:
            raise CommandError(f"{failed} build(s) did not succeed")
