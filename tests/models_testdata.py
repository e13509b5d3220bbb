"""Model versions made directly (no training): a ``PipelineRun`` that succeeded, its published
segmentation ``Layer`` (``model-v<n>``) and the ``ModelVersion`` row with metrics shaped as
``runs.publish.run_metrics`` stores them (per step the manifest's figures, the held-out
``evaluation`` with its per-box rows). For the model comparison page's tests."""

from __future__ import annotations

import shutil
from typing import Any

from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.runs.models import ModelVersion, PipelineRun


def scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1}


def evaluation_summary(per_box: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """An evaluation variant ({precision, recall, f1, tp, fp, fn, boxes, per_box}) from
    (tp, fp, fn) per box name, pooled as ``pipeline.evaluation`` pools them."""
    rows = []
    for name, (tp, fp, fn) in per_box.items():
        rows.append(
            {
                "box": name, "n_gt": tp + fn, "n_pred": tp + fp, "tp": tp, "fp": fp, "fn": fn,
                **scores(tp, fp, fn), "mean_matched_iou": 0.8 if tp else None,
                "dice_pixel": 0.85, "dice_object": 0.8,
            }
        )  # fmt: skip
    tp, fp, fn = (sum(t[i] for t in per_box.values()) for i in range(3))
    return {
        **scores(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn, "boxes": len(per_box),
        "dice_pixel": 0.85, "per_box": rows,
    }  # fmt: skip


def add_model_version(
    dataset: Dataset,
    number: int,
    *,
    per_box_all: dict[str, tuple[int, int, int]] | None,
    per_box_filtered: dict[str, tuple[int, int, int]] | None = None,
    epochs: int = 6,
    best_val_loss: float = 0.5,
    objects: int = 30,
    kept: int = 25,
    preset: str = "tiny",
    labels_from: Layer | None = None,
) -> ModelVersion:
    """A succeeded run of ``dataset``'s image and the version it published. ``labels_from``
    (a segmentation layer with files): its label image is copied as the version's layer, so
    the viewer can load it; else the layer row has no files. No evaluation when
    ``per_box_all`` is None."""
    image = dataset.layers.get(kind=LayerKind.IMAGE)
    name = f"model-v{number}"
    path = f"image.ome.zarr/labels/{name}"
    template = labels_from or dataset.layers.filter(kind=LayerKind.SEGMENTATION).first()
    if labels_from is not None:
        shutil.copytree(dataset.root / labels_from.path, dataset.root / path)
    layer = Layer.objects.create(
        dataset=dataset,
        name=name,
        kind=LayerKind.SEGMENTATION,
        path=path,
        ngff_version=template.ngff_version if template else image.ngff_version,
        shape=list(image.shape),
        axes=list(image.axes),
        dtype="uint32",
        voxel_size=list(image.voxel_size),
        unit=image.unit,
        levels=template.levels if template else 1,
    )
    run = PipelineRun.objects.create(
        dataset=dataset,
        image_layer=image,
        preset=preset,
        status="succeeded",
        stage="publish",
        result_layer=layer,
    )
    metrics: dict[str, Any] = {
        "train": {"best_val_loss": best_val_loss, "epochs": epochs},
        "measure": {"objects": objects},
        "filter": {"kept": kept, "objects": objects},
    }
    if per_box_all is not None:
        metrics["evaluation"] = {"all": evaluation_summary(per_box_all)}
        if per_box_filtered is not None:
            metrics["evaluation"]["filtered"] = evaluation_summary(per_box_filtered)
    return ModelVersion.objects.create(
        dataset=dataset,
        number=number,
        run=run,
        path=f"models/dataset-{dataset.pk}/v{number}/model.pt",
        params={"preset": preset, "overrides": {}, "config": {}, "segment": None},
        metrics=metrics,
        layer=layer,
    )
