"""The runs app's answer to :func:`webapp.core.current_models.current_model`: the dataset's
current model version, with its published segmentation and probability map where they cover
the asked image layer voxel for voxel (the run segmented that layer at full resolution)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from webapp.core.current_models import CurrentModel
from webapp.datasets.models import Layer, LayerKind
from webapp.runs.models import ModelVersion
from webapp.runs.publish import model_file


def _spatial_shape(layer: Layer) -> tuple[int, ...]:
    """The layer's (z, y, x) extent; a 2D layer is one voxel deep."""
    sizes = dict(zip(layer.axes or [], layer.shape or [], strict=False))
    return tuple(int(sizes.get(axis, 1)) for axis in "zyx")


def _same_grid(output: Layer, image: Layer) -> bool:
    return _spatial_shape(output) == _spatial_shape(image)


def current_model_of(dataset_id: int, image_layer_id: int) -> CurrentModel | None:
    """The current version of the dataset (None without one), its outputs over the image
    layer when they exist on its grid."""
    version = (
        ModelVersion.objects.select_related("run", "layer__dataset")
        .filter(dataset_id=dataset_id, current=True)
        .first()
    )
    if version is None:
        return None
    found = CurrentModel(name=f"model v{version.number}", model_file=model_file(version))
    run, segmentation = version.run, version.layer
    image = Layer.objects.filter(pk=image_layer_id, dataset_id=dataset_id).first()
    if run is None or segmentation is None or image is None:
        return found
    if run.image_layer_id != image.pk or not _same_grid(segmentation, image):
        return found
    root = Path(segmentation.dataset.root)
    labels = root / segmentation.path
    if not labels.exists():
        return found
    probability = (
        Layer.objects.filter(source_layer=segmentation, kind=LayerKind.IMAGE).order_by("pk").first()
    )
    probability_path = None
    if probability is not None and _same_grid(probability, image):
        probability_path = root / probability.path
        if not probability_path.exists():
            probability_path = None
    return replace(found, segmentation=labels, probability=probability_path)
