"""A 2D image's detections hold their area (um^2) in ``volume``; tables built before held the area
times one pixel's depth (a 2D label image is measured one voxel deep, z voxel = y's). This
divides those rows, and the volume bounds of those layers' filters, by that depth."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import F

from pipeline.units import nanometres_per_unit


def _depth_um_of_2d_layers(apps: Any) -> dict[int, float]:
    """Per 2D segmentation layer, the depth its detections were measured at: its y voxel, um."""
    layers = apps.get_model("datasets", "Layer").objects.filter(kind="segmentation")
    depths = {}
    for layer in layers.only("id", "axes", "voxel_size", "unit"):
        axes, voxel = list(layer.axes or []), list(layer.voxel_size or [])  # voxel: y, x
        if axes and "z" not in axes and len(voxel) == 2:
            depth_um = float(voxel[0]) * nanometres_per_unit(layer.unit) / 1000.0
            if depth_um > 0 and depth_um != 1.0:
                depths[layer.id] = depth_um
    return depths


def forwards(apps: Any, schema_editor: Any) -> None:
    Detection = apps.get_model("detections", "Detection")
    DetectionFilter = apps.get_model("detections", "DetectionFilter")
    for layer_id, depth in _depth_um_of_2d_layers(apps).items():
        Detection.objects.filter(layer_id=layer_id).update(volume=F("volume") / depth)
        for bound in ("volume_min", "volume_max"):
            DetectionFilter.objects.filter(layer_id=layer_id, **{f"{bound}__isnull": False}).update(
                **{bound: F(bound) / depth}
            )


class Migration(migrations.Migration):
    dependencies = [
        ("detections", "0003_merge_0002_card_builds_0002_detection_filter"),
        ("datasets", "0002_datasetjob_lease"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
