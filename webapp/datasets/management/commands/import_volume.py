"""``manage.py import_volume``: import a volume (and label images) as a dataset, with a bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.progress import tqdm_progress
from pipeline.units import DEFAULT_UNIT
from webapp.datasets.models import JobStatus, Visibility
from webapp.datasets.services import ServiceError, import_job_create, import_job_run


def labels_parse(values: list[str]) -> dict[str, Path]:
    """``PATH`` (named after the file, ``nuclei.tif`` -> ``nuclei``) or ``NAME=PATH``."""
    labels: dict[str, Path] = {}
    for value in values:
        if "=" in value:
            name, _, path = value.partition("=")
        else:
            path = value
            name = Path(value.rstrip("/")).name.split(".", 1)[0]
        if name in labels:
            raise CommandError(f"Label name {name!r} is given twice; use NAME=PATH.")
        labels[name] = Path(path)
    return labels


def owner_resolve(username: str | None) -> Any:
    """The named user, or the first superuser when no name is given."""
    users = get_user_model().objects
    if username:
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}: create it first or pass another --owner.")
        return user
    user = users.filter(is_superuser=True).order_by("id").first()
    if user is None:
        raise CommandError(
            "No owner: pass --owner USERNAME (create one with createsuperuser or "
            "ensure_demo_admin)."
        )
    return user


class Command(BaseCommand):
    help = (
        "Import a TIFF/OME-TIFF stack, a NumPy .npy, an OME-Zarr (copied, or registered in "
        "place) or a .zip of one as a dataset, with label images and meshes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Input file or OME-Zarr directory.")
        parser.add_argument("--name", required=True, help="Dataset name.")
        parser.add_argument(
            "--voxel-size",
            nargs=3,
            type=float,
            metavar=("Z", "Y", "X"),
            help="Voxel size; default: the file's own metadata.",
        )
        parser.add_argument("--unit", default=None, help="Unit of --voxel-size (nanometer).")
        parser.add_argument(
            "--labels",
            action="append",
            default=[],
            metavar="[NAME=]PATH",
            help="A label image; repeat for several.",
        )
        parser.add_argument("--owner", help="Owner's username (default: the first superuser).")
        parser.add_argument("--visibility", choices=Visibility.values, default=Visibility.PRIVATE)
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--register-in-place",
            action="store_true",
            help="Reference an existing OME-Zarr 0.4/0.5 instead of copying it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        owner = owner_resolve(options["owner"])
        unit = options["unit"]
        if options["voxel_size"] and not unit:
            unit = DEFAULT_UNIT
        try:
            job = import_job_create(
                owner,
                name=options["name"],
                source_path=Path(options["path"]),
                voxel_size=options["voxel_size"],
                unit=unit,
                labels=labels_parse(options["labels"]),
                visibility=options["visibility"],
                description=options["description"],
                register_in_place=options["register_in_place"],
                enqueue=False,
            )
        except ServiceError as exc:
            raise CommandError(str(exc))
        job = import_job_run(job.id, progress=tqdm_progress("tile"))
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(job.error or f"The import ended as {job.status}.")
        dataset = job.dataset
        assert dataset is not None  # a succeeded import published its dataset
        layers = ", ".join(f"{layer.name} ({layer.kind})" for layer in dataset.layers.all())
        self.stdout.write(
            self.style.SUCCESS(f"Imported {dataset.name!r} as /datasets/{dataset.slug}/: {layers}")
        )
