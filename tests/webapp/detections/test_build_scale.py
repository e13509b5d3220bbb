"""A 100,000-object layer: the whole build job (measure, write the rows) in bounded memory."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from detections_testdata import write_many_objects

from webapp.datasets.models import Dataset, JobStatus, Layer, LayerKind
from webapp.detections.models import Detection
from webapp.detections.services import detections_build_now

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CELLS = (40, 50, 50)  # 100,000 objects, 200 x 500 x 500 voxels


def test_one_hundred_thousand_objects_build_with_bounded_memory(owner: Any) -> None:
    dataset = Dataset.objects.create(name="Many", slug="many", owner=owner)
    shape = write_many_objects(dataset.root, CELLS)
    common = {"dataset": dataset, "shape": list(shape), "axes": ["z", "y", "x"]}
    Layer.objects.create(name="image", kind=LayerKind.IMAGE, path="image.ome.zarr", **common)
    layer = Layer.objects.create(
        name="nuclei", kind=LayerKind.SEGMENTATION, path="labels.ome.zarr", **common
    )
    whole = int(np.prod(shape)) * (4 + 2)  # labels and image held whole: 300 MB
    start = time.perf_counter()
    tracemalloc.start()
    try:
        build = detections_build_now(layer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    print(f"100,000 objects built in {seconds:.1f} s, tracemalloc peak {peak / 1e6:.0f} MB")
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    assert peak < whole / 3, f"peak {peak / 1e6:.0f} MB"
    rows = Detection.objects.filter(layer=layer)
    assert build.n_detections == rows.count() == 100_000
    assert not rows.exclude(voxels=4 * 9 * 9).exists()
    last = rows.get(segment_id=100_000)
    assert (last.bbox_z0, last.bbox_y0, last.bbox_x0) == (195, 490, 490)
    assert last.mean_intensity == pytest.approx(0.0)  # 100,000 % 1000
