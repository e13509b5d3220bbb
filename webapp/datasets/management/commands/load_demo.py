"""``manage.py load_demo``: a synthetic nuclei volume with labels and meshes, as a public dataset.

The volume is written to a temporary ``.npy`` and imported through the same service as any
upload, so the demo exercises the real import path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.progress import tqdm_progress
from pipeline.synthetic import make_nuclei_volume
from webapp.core.jobs.lifecycle import jobs_run_inline
from webapp.datasets.models import Dataset, JobStatus, Visibility
from webapp.datasets.services import dataset_delete, import_job_create, import_job_run

DEMO_SLUG = "demo-nuclei"
DEMO_NAME = "Demo nuclei"
DEMO_OWNER = "demo"
VOXEL_NM = 200.0


class Command(BaseCommand):
    help = "Create (or replace) the public demo dataset 'Demo nuclei' from a seeded volume."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-absent", action="store_true", help="Do nothing if the demo dataset exists."
        )
        parser.add_argument(
            "--shape", nargs=3, type=int, default=[256, 256, 256], metavar=("Z", "Y", "X")
        )
        parser.add_argument("--nuclei", type=int, default=300, help="Number of nuclei.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        existing = Dataset.objects.filter(slug=DEMO_SLUG).first()
        if existing is not None and options["if_absent"]:
            self.stdout.write(f"Demo dataset already present: /datasets/{DEMO_SLUG}/")
            return
        owner, created = get_user_model().objects.get_or_create(
            username=DEMO_OWNER, defaults={"is_active": False}
        )
        if created:  # a placeholder owner: nobody logs in as it
            owner.set_unusable_password()
            owner.save(update_fields=["password"])
        if existing is not None:
            self.stdout.write("Replacing the existing demo dataset.")
            dataset_delete(existing, existing.owner)

        shape = tuple(options["shape"])
        self.stdout.write(f"Making {options['nuclei']} nuclei in a {shape} volume...")
        try:
            image, labels = make_nuclei_volume(
                shape=shape,
                n_nuclei=options["nuclei"],
                seed=options["seed"],
                voxel_size_nm=VOXEL_NM,
            )
        except ValueError as exc:
            raise CommandError(str(exc))
        n_objects = int(labels.max())
        tmp_root = Path(settings.DATA_ROOT) / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="demo-") as tmp:
            image_path, labels_path = Path(tmp) / "image.npy", Path(tmp) / "nuclei.npy"
            np.save(image_path, image)
            np.save(labels_path, labels)
            del image, labels
            job = import_job_create(
                owner,
                name=DEMO_NAME,
                slug=DEMO_SLUG,
                source_path=image_path,
                voxel_size=(VOXEL_NM, VOXEL_NM, VOXEL_NM),
                unit="nanometer",
                labels={"nuclei": labels_path},
                visibility=Visibility.PUBLIC,
                description=(
                    f"Synthetic nuclei ({n_objects} objects, {shape[0]}x{shape[1]}x{shape[2]} "
                    f"voxels of {VOXEL_NM:g} nm, seed {options['seed']}) with ground-truth "
                    "labels and meshes."
                ),
                enqueue=False,
            )
            # What other apps queue when the layers appear (detections tables...) runs here
            # too: the demo is complete when the command ends, with or without a worker.
            with jobs_run_inline():
                job = import_job_run(job.id, progress=tqdm_progress("tile"))
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(job.error or f"The demo import ended as {job.status}.")
        assert job.dataset is not None  # a succeeded import published its dataset
        self.stdout.write(self.style.SUCCESS(f"Demo dataset ready: /datasets/{job.dataset.slug}/"))
