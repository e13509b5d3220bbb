"""Migration 0004: detections of 2D layers built before held their area times one pixel's depth;
it turns them (and their filters' volume bounds) into areas, and leaves 3D layers alone."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps

from webapp.detections.models import Detection, DetectionFilter

migration = importlib.import_module("webapp.detections.migrations.0004_areas_of_2d_detections")


@pytest.mark.django_db
def test_2d_volumes_become_areas_and_3d_stay(make_layer: Any) -> None:
    flat = make_layer(slug="flat", rows=3)
    flat.axes, flat.voxel_size, flat.unit = ["y", "x"], [0.25, 0.25], "micrometer"
    flat.save()
    deep = make_layer(slug="deep", rows=3)
    before = {d.pk: d.volume for d in Detection.objects.all()}
    DetectionFilter.objects.create(layer=flat, volume_min=2.0, volume_max=None)
    DetectionFilter.objects.create(layer=deep, volume_min=2.0, volume_max=8.0)

    migration.forwards(apps, None)

    for row in Detection.objects.all():
        expected = before[row.pk] / (0.25 if row.layer_id == flat.pk else 1.0)
        assert row.volume == pytest.approx(expected), row.layer_id
    bounds = {f.layer_id: (f.volume_min, f.volume_max) for f in DetectionFilter.objects.all()}
    assert bounds[flat.pk][0] == pytest.approx(8.0) and bounds[flat.pk][1] is None
    assert bounds[deep.pk] == (2.0, 8.0)
