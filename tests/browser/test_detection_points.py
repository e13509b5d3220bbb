"""The detections as points in the viewer: a hidden annotation layer that a user turns on, and
Neuroglancer then loads the points from the precomputed source and draws each on its object."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from PIL import Image

from pipeline.annotation_points import write_detection_points_of_store
from webapp.datasets.models import JobStatus, LayerKind, Visibility
from webapp.detections.models import Detection
from webapp.detections.points import layer_points_dir
from webapp.detections.services import detections_build_now

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
POINTS = "nuclei detections"

# The point ids Neuroglancer holds in the annotation chunks it has loaded for a layer: each
# spatial-index level of its annotation source is a chunk source; a loaded chunk's data holds
# the ids of its annotations per annotation type.
LOADED_POINT_IDS_JS = """(name) => {
  const layer = annotome.viewer().layerManager.getLayerByName(name).layer;
  const ids = new Set();
  let chunks = 0, levels = 0;
  for (const state of layer.annotationStates.states) {
    for (const level of state.source.spatiallyIndexedSources) {
      levels += 1;
      for (const chunk of level.chunks.values()) {
        const annotations = chunk.data && chunk.data.serializedAnnotations;
        if (!annotations) continue;
        chunks += 1;
        for (const list of annotations.typeToIds) for (const id of list) ids.add(String(id));
      }
    }
  }
  return {levels, chunks, ids: [...ids].sort()};
}"""


def wait_drawn(page: Any) -> None:
    page.wait_for_timeout(200)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.wait_for_timeout(300)


def xy_panel(page: Any, path: Path) -> np.ndarray:
    box = page.evaluate(
        """() => {
          const frame = document.getElementById('neuroglancer');
          const f = frame.getBoundingClientRect();
          const r = frame.contentDocument
            .querySelector('.neuroglancer-rendered-data-panel').getBoundingClientRect();
          return {x: f.x + r.x, y: f.y + r.y, width: r.width, height: r.height};
        }"""
    )
    png = page.screenshot(path=str(path), clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)


def yellow(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the points' marker colour (#ffd800, blended a little at the edges)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 180) & (g > 150) & (b < 90)


def test_detections_layer_turned_on_loads_and_draws_every_point(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    owner = get_user_model().objects.create_user("owner", password="owner-pass-123")
    dataset = build_nuclei_dataset(owner, slug="points", visibility=Visibility.PUBLIC)
    layer = dataset.layers.get(kind=LayerKind.SEGMENTATION)
    build = detections_build_now(layer)
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    rows = list(Detection.objects.filter(layer=layer).order_by("segment_id"))
    assert len(rows) >= 10

    page = browser_context.new_page()
    requests: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda r: (
            requests.append((r.status, r.url.split("/annotations/nuclei-detections/")[1]))
            if "/annotations/nuclei-detections/" in r.url
            else None
        ),
    )
    page.goto(f"{live_server.url}/datasets/points/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    report = page.evaluate("() => annotome.layerReport()")
    assert [r["name"] for r in report] == ["image", "nuclei", POINTS]
    assert all(r["loaded"] and not r["errors"] for r in report), report
    state = page.evaluate("() => annotome.viewer().state.toJSON().layers[2]")
    assert state["type"] == "annotation" and state["visible"] is False
    assert state["linkedSegmentationLayer"] == {"segment_id": "nuclei"}
    # Hidden: only the source's info was read (through the versioned URL), no points.
    assert [(s, u.split("?")[0]) for s, u in requests] == [(200, "info")]
    assert "?v=" in requests[0][1]

    # The user turns the layer on; the other layers off, so the 3D view shows the points alone
    # (each lies inside its nucleus's mesh).
    page.evaluate(
        """(name) => { const lm = annotome.viewer().layerManager;
          lm.getLayerByName(name).setVisible(true);
          lm.getLayerByName('nuclei').setVisible(false);
          lm.getLayerByName('image').setVisible(false);
          annotome.viewer().state.restoreState({layout: '3d', showSlices: false}); }""",
        POINTS,
    )
    wait_drawn(page)
    spatial = [u.split("?")[0] for s, u in requests if s == 200 and "spatial" in u]
    assert "spatial0/0_0_0" in spatial, requests
    assert all(s == 200 for s, u in requests if "spatial" in u), requests
    loaded = page.evaluate(LOADED_POINT_IDS_JS, POINTS)
    assert loaded["levels"] >= 1 and loaded["chunks"] >= 1, loaded
    assert loaded["ids"] == sorted(str(r.segment_id) for r in rows), loaded
    drawn = xy_panel(page, artifacts_dir / "points-3d.png")
    assert yellow(drawn).sum() > 10 * len(rows), yellow(drawn).sum()

    # The same points under a spatial index of several levels (at most 2 points a cell):
    # Neuroglancer reads the levels coarse to fine and, for the whole volume in view, all of
    # them.
    frame = pd.DataFrame.from_records(
        Detection.objects.filter(layer=layer).values(
            "segment_id", "centroid_z", "centroid_y", "centroid_x", "volume", "sphericity"
        )
    )
    result = write_detection_points_of_store(
        frame, dataset.root / layer.path, layer_points_dir(layer), limit=2
    )
    assert len(result.levels) >= 3
    requests.clear()
    page.reload()
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.evaluate(
        """(name) => { const lm = annotome.viewer().layerManager;
          lm.getLayerByName(name).setVisible(true);
          lm.getLayerByName('nuclei').setVisible(false);
          annotome.viewer().state.restoreState({layout: '3d', showSlices: false}); }""",
        POINTS,
    )
    wait_drawn(page)
    loaded = page.evaluate(LOADED_POINT_IDS_JS, POINTS)
    assert loaded["levels"] == len(result.levels), loaded
    assert loaded["ids"] == sorted(str(r.segment_id) for r in rows), loaded
    levels_read = {u.split("/")[0] for s, u in requests if s == 200 and "spatial" in u}
    assert levels_read == {level.key for level in result.levels}, requests

    # One point, seen in a 2D slice through its centroid at 10 pixels per voxel: its marker is
    # drawn at the panel's centre, where the viewer puts that position; and the image drawn
    # under it has its voxel edges where voxel centres at whole coordinates put them (the
    # convention the points are written in: Neuroglancer centres OME-Zarr voxel i at i).
    row = rows[len(rows) // 2]
    position = [row.centroid_x_um / 0.2, row.centroid_y_um / 0.2, row.centroid_z_um / 0.2]
    page.evaluate(
        """(p) => annotome.viewer().state.restoreState(
             {layout: 'xy', position: p, crossSectionScale: 0.1})""",
        position,
    )
    wait_drawn(page)
    slice_ = xy_panel(page, artifacts_dir / "point-xy.png")
    ys, xs = np.nonzero(yellow(slice_))
    centre = np.array(slice_.shape[:2]) / 2
    near = (np.abs(ys - centre[0]) < 20) & (np.abs(xs - centre[1]) < 20)
    assert near.sum() >= 10, (near.sum(), len(ys))
    marker = np.array([ys[near].mean(), xs[near].mean()])
    assert np.all(np.abs(marker - centre) <= 2.5), (marker, centre)
    line = slice_[int(centre[0]) - 30, :, 0]  # a row of image pixels above the marker
    edges = np.nonzero(np.diff(line) != 0)[0] + 1 - centre[1]  # offsets from the centre
    edges = edges[(np.abs(edges) > 8) & (np.abs(edges) < 250)]
    phase = ((edges - (0.5 - position[0] % 1) * 10) + 5) % 10 - 5  # 0: a voxel edge
    assert len(edges) > 20 and np.mean(np.abs(phase) <= 1.5) > 0.9, (edges, phase)
