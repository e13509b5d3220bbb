"""The curation jobs' runners (on ``webapp.core.jobs.runner.JobRunner``).

Publishing a curated layer: ``pipeline.curate`` writes the labels (every level, block by block)
and the meshes with their properties into the job's work directory; one transaction then
creates the segmentation and mesh Layer rows, renames both directories into the dataset, lists
the label image in the image's ``labels`` metadata and marks the job succeeded. A failure puts
everything back. ``layers_changed`` then builds the new layer's detections table (and the
thumbnail), as after an import.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from django.db import transaction

from pipeline.curate import add_label_name, curate, remove_label_name
from pipeline.naming import mesh_layer_name
from pipeline.precomputed import VERDICT_PROPERTY, TagsProperty
from webapp.core.errors import InvalidRequest
from webapp.core.jobs.progress import JobProgressWriter
from webapp.core.jobs.runner import JobRunner
from webapp.curation import selectors
from webapp.curation.models import CurationJob
from webapp.curation.services import curated_paths, verdict_properties_write
from webapp.datasets.import_publish import mesh_layer_fields
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.datasets.signals import layers_changed


class CurationRunner(JobRunner[CurationJob]):
    model = CurationJob

    def load(self) -> CurationJob:
        return CurationJob.objects.select_related("layer__dataset", "campaign", "owner").get(
            id=self.job_id
        )


class VerdictPropertiesRunner(CurationRunner):
    """Rewrite one layer's verdict tags (see ``services.verdict_properties_write``)."""

    work_prefix = "verdict-properties"

    def work(self, job: CurationJob, work_dir: Path, progress: JobProgressWriter) -> None:
        progress("writing segment properties", 0, 1)
        written = verdict_properties_write(job.layer)
        with transaction.atomic():
            self.succeed(params={**job.params, "files": [str(p) for p in written]})


class PublishRunner(CurationRunner):
    """Publish a curated layer of a campaign's accepted objects."""

    work_prefix = "curate"
    failure_message = (
        "Publishing the curated layer failed because of an internal error ({kind}); see the "
        "job log."
    )

    def work(self, job: CurationJob, work_dir: Path, progress: JobProgressWriter) -> None:
        campaign = job.campaign
        if campaign is None:
            raise InvalidRequest("The campaign no longer exists.")
        source = job.layer
        dataset = source.dataset
        name = str(job.params["name"])
        verdicts = [str(v) for v in job.params["verdicts"]]
        progress("choosing objects", 0, 1)
        accepted = selectors.accepted_segments(campaign, verdicts)
        if not accepted:
            raise InvalidRequest("No detection has an accepted verdict any more.")
        meshes = selectors.mesh_layers_of(source)
        mesh_src = dataset.root / meshes[0].path if meshes else None
        if mesh_src is not None and not (mesh_src / "info").is_file():
            mesh_src = None
        labels_rel, meshes_rel = curated_paths(source, name)
        classes = selectors.classes_of(campaign)
        curate(
            dataset.root / source.path,
            work_dir / "labels",
            accepted.keys(),
            meshes=mesh_src,
            meshes_out=work_dir / "meshes" if mesh_src is not None else None,
            tags=TagsProperty(
                VERDICT_PROPERTY,
                f"Proofreading verdict (campaign {campaign.name})"[:200],
                [c.name for c in classes],
                [],
                [c.label for c in classes],
            ),
            tags_of=accepted,
            progress=progress,
        )
        progress.check_cancelled()
        progress("publishing", 0, 1)
        job.params = {**job.params, "kept": len(accepted), "campaign_id": campaign.id}
        layer = self._publish(
            job, dataset, source, name, labels_rel, meshes_rel, work_dir, mesh_src
        )
        # Only the new layer changed: the source's table and cards stay as they are.
        layers_changed.send(sender=Dataset, dataset=dataset, layers=[layer])

    def _publish(
        self,
        job: CurationJob,
        dataset: Dataset,
        source: Layer,
        name: str,
        labels_rel: str,
        meshes_rel: str,
        work_dir: Path,
        mesh_src: Path | None,
    ) -> Layer:
        labels_target = dataset.root / labels_rel
        meshes_target = dataset.root / meshes_rel
        image_store = dataset.root / PurePosixPath(labels_rel).parent.parent
        moved: list[tuple[Path, Path]] = []
        listed = False
        try:
            with transaction.atomic():
                if Layer.objects.filter(
                    dataset=dataset, name__in=[name, mesh_layer_name(name)]
                ).exists():
                    raise InvalidRequest(f"A layer named {name!r} appeared meanwhile.")
                for target in (labels_target, meshes_target):
                    if os.path.lexists(target):
                        raise InvalidRequest(f"{target.relative_to(dataset.root)} exists already.")
                fields = {
                    f: getattr(source, f)
                    for f in ("ngff_version", "shape", "axes", "dtype", "voxel_size", "unit")
                }
                segmentation = Layer.objects.create(
                    dataset=dataset,
                    name=name,
                    kind=LayerKind.SEGMENTATION,
                    path=labels_rel,
                    channels=source.channels,
                    levels=source.levels,
                    **fields,
                )
                if mesh_src is not None:
                    Layer.objects.create(
                        dataset=dataset,
                        name=mesh_layer_name(name),
                        kind=LayerKind.MESH,
                        source_layer=segmentation,
                        **mesh_layer_fields(segmentation, meshes_rel),
                    )
                labels_target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(work_dir / "labels", labels_target)
                moved.append((labels_target, work_dir / "labels"))
                if mesh_src is not None:
                    meshes_target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(work_dir / "meshes", meshes_target)
                    moved.append((meshes_target, work_dir / "meshes"))
                if (image_store / "labels").is_dir():
                    add_label_name(image_store, name)
                    listed = True
                self.succeed(result_layer=segmentation, params=job.params)
            return segmentation
        except BaseException:
            for target, back in reversed(moved):
                if os.path.lexists(target) and not os.path.lexists(back):
                    os.rename(target, back)
                elif os.path.lexists(target):
                    shutil.rmtree(target, ignore_errors=True)
            if listed:
                remove_label_name(image_store, name)
            raise


def verdict_properties_run(job_id: int) -> CurationJob:
    return VerdictPropertiesRunner(job_id).run()


def publish_run(job_id: int) -> CurationJob:
    return PublishRunner(job_id).run()
