"""``manage.py build_meshes SLUG [--layer NAME]``: (re)build a dataset's meshes, with a bar."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.progress import tqdm_progress
from webapp.datasets.models import Dataset, JobStatus, LayerKind
from webapp.datasets.services import ServiceError, meshes_build_run, meshes_build_start


class Command(BaseCommand):
    help = "Rebuild the precomputed meshes and segment properties of segmentation layers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Dataset slug.")
        parser.add_argument("--layer", help="Segmentation layer name (default: all of them).")

    def handle(self, *args: Any, **options: Any) -> None:
        dataset = Dataset.objects.filter(slug=options["slug"]).first()
        if dataset is None:
            raise CommandError(f"No dataset with slug {options['slug']!r}.")
        layers = dataset.layers.filter(kind=LayerKind.SEGMENTATION)
        if options["layer"]:
            layers = layers.filter(name=options["layer"])
            if not layers.exists():
                raise CommandError(
                    f"Dataset {dataset.slug!r} has no segmentation layer {options['layer']!r}."
                )
        if not layers.exists():
            raise CommandError(f"Dataset {dataset.slug!r} has no segmentation layers.")
        for layer in layers:
            try:
                job = meshes_build_start(dataset, layer, enqueue=False)
            except ServiceError as exc:
                raise CommandError(str(exc))
            job = meshes_build_run(job.id, progress=tqdm_progress("block", {"meshing": "object"}))
            if job.status != JobStatus.SUCCEEDED:
                raise CommandError(job.error or f"Meshing {layer.name!r} ended as {job.status}.")
            self.stdout.write(self.style.SUCCESS(f"Built meshes of {dataset.slug}/{layer.name}."))
