"""Every page opens Neuroglancer on the section it means, and a point drawn there is stored at
the voxel drawn under the mouse.

Neuroglancer centres an OME-Zarr voxel ``i`` at the global coordinate ``i`` (it shifts the NGFF
translation by half a voxel); the site once put voxel ``i`` at ``i + 0.5``, the boundary with the
next voxel, so each page showed the section after the one it named and a click was stored half a
voxel off. Here the image says which voxel is drawn: section z has the grey level ``10 + 6 z``,
and ``+ 3`` where ``x + y`` is odd (a checkerboard). With a shader that draws raw values, a
screenshot of the x-y panel reads back the section and the checkerboard's parity, on the viewer
page, the task page (and where its Ctrl+clicks are stored), the proofreading queue and the
disector."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from PIL import Image
from site_login import log_in
from viewer_mouse import READY_MS, ctrl_click, mouse_voxel, viewer_ready

from webapp.annotation import services as annotation_services
from webapp.annotation.models import Assignment, Role
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.services import detections_build_now
from webapp.proofreading import services as proofreading_services
from webapp.proofreading.services import CampaignSettings
from webapp.stereology import services as stereology_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "section-pass-123"
SHAPE = (40, 64, 64)  # z y x, 200 nm voxels
BOX = (20, 32, 32)

# Raw values as grey levels (uint8 / 255), whatever contrast the page set.
RAW_SHADER = "void main() { emitGrayscale(toRaw(getDataValue()) / 255.0); }"

# Only the image layer, drawn raw, without the axis lines: the x-y panel shows voxel values.
SHOW_RAW_IMAGE = """(shader) => {
  const viewer = annotome.viewer();
  const image = viewer.state.toJSON().layers.find((l) => l.type === "image");
  for (const managed of viewer.layerManager.managedLayers) {
    managed.setVisible(managed.name === image.name);
  }
  viewer.layerManager.getLayerByName(image.name).layer.fragmentMain.value = shader;
  viewer.state.restoreState({showAxisLines: false});
  return image.name;
}"""

# Neuroglancer's rule for snapping a position to a voxel, per global dimension: true where
# every layer's voxels are centred on whole coordinates (what the site's positions assume).
CENTRES_AT_INTEGERS = """() => Array.from(
  annotome.viewer().coordinateSpace.value.bounds.voxelCenterAtIntegerCoordinates)"""

RENDERED = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


def ramp_image() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    image: np.ndarray = (10 + 6 * z + 3 * ((x + y) % 2)).astype(np.uint8)
    return image


def decode(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Section and checkerboard parity of grey levels (one level of rendering noise allowed)."""
    r = grey.astype(np.int64) - 10
    z = (r + 1) // 6
    parity = (r - 6 * z >= 2).astype(np.int64)
    return z, parity


def login(page: Any, url: str, username: str, next_path: str) -> None:
    log_in(page, url, username, PASSWORD, next_path)


def raw_xy_panel(page: Any, artifacts_dir: Path, name: str) -> tuple[np.ndarray, dict[str, float]]:
    """The x-y panel drawn with the raw shader: its grey levels and its box on the page."""
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.evaluate(SHOW_RAW_IMAGE, RAW_SHADER)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.evaluate(RENDERED)
    box: dict[str, float] = (
        page.frame_locator("#neuroglancer")
        .locator(".neuroglancer-rendered-data-panel")
        .first.bounding_box()
    )
    page.mouse.move(2, 2)  # no hover highlight over the panel
    png = page.screenshot(clip=box, path=str(artifacts_dir / f"{name}.png"))
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return grey, box


def shown_section(grey: np.ndarray) -> int:
    """The one section drawn around the panel's centre (asserted one)."""
    h, w = grey.shape
    z, _ = decode(grey[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20])
    values, counts = np.unique(z, return_counts=True)
    assert counts.max() >= 0.98 * z.size, dict(zip(values.tolist(), counts.tolist(), strict=True))
    return int(values[np.argmax(counts)])


def view_position(page: Any) -> list[float]:
    position: list[float] = page.evaluate("() => annotome.viewer().state.toJSON().position")
    return position


def test_each_page_shows_the_section_it_means_and_stores_the_voxel_clicked(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    dataset = build_nuclei_dataset(
        owner,
        slug="ramp",
        shape=SHAPE,
        n_nuclei=8,
        visibility=Visibility.PUBLIC,
        image=ramp_image(),
    )
    image = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
    segmentation = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    page = browser_context.new_page()
    login(page, live_server.url, "owner", f"/datasets/{dataset.slug}/")

    # The dataset's viewer opens on the middle section.
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    assert page.evaluate(CENTRES_AT_INTEGERS) == [True, True, True]
    assert view_position(page) == [32, 32, 20]
    grey, _ = raw_xy_panel(page, artifacts_dir, "viewer")
    assert shown_section(grey) == 20

    # A task opens on its box's middle section; points Ctrl+clicked there are stored at the
    # section and at the voxel drawn under the mouse (the checkerboard's parity tells).
    voxel = annotation_services.layer_geometry(image)["voxel_size_um"]
    spec = annotation_services.CampaignSpec(
        name="Sections",
        label_schema=[{"name": "nucleus", "label": "Nucleus", "colour": "#ffcc00", "key": "1"}],
        box_size_um=[n * v for n, v in zip(BOX, voxel, strict=True)],
        redundancy=1,
    )
    campaign = annotation_services.campaign_create(owner, dataset, image, spec)
    annotation_services.member_add(campaign, owner, "owner", Role.ANNOTATOR)
    annotation_services.boxes_tile(campaign, owner)
    page.goto(f"{live_server.url}/annotation/{campaign.id}/next/")
    page.wait_for_url("**/annotation/task/*/")
    viewer_ready(page)
    box = Assignment.objects.get(annotator=owner).box
    middle = [s + n // 2 for s, n in zip(box.start, box.size, strict=True)]
    assert view_position(page) == middle[::-1]
    assert page.evaluate(CENTRES_AT_INTEGERS) == [True, True, True]
    grey, panel = raw_xy_panel(page, artifacts_dir, "task")
    assert shown_section(grey) == middle[0]
    # Clicks at a third of a voxel from its centre, in each half of it: the half that a
    # half-voxel error gives to the neighbour too (about 9 screen pixels a voxel).
    cx, cy = panel["x"] + panel["width"] / 2, panel["y"] + panel["height"] / 2
    per_voxel = 1 / page.evaluate("() => annotome.viewer().state.toJSON().crossSectionScale")
    page.mouse.click(cx, cy)  # focus the viewer
    _, y0, x0 = mouse_voxel(page, cx, cy)
    clicks = []
    for dx, dy, fx, fy in (
        (-3, -2, -0.3, 0.3),
        (-1, 2, 0.3, -0.3),
        (2, -1, -0.3, -0.3),
        (3, 3, 0.3, 0.3),
        (0, -3, -0.3, 0.3),
        (-2, 1, 0.3, 0.3),
    ):
        target = (round(y0) + dy + fy, round(x0) + dx + fx)
        x = cx + (target[1] - x0) * per_voxel
        y = cy + (target[0] - y0) * per_voxel
        assert mouse_voxel(page, x, y)[1:] == pytest.approx(target, abs=0.1)
        clicks.append((x, y))
        ctrl_click(page, x, y)
    page.wait_for_function("(n) => annotome.count() === n", arg=len(clicks))
    page.evaluate("() => annotome.settled()")
    stored = sorted(
        (a["object_id"], a["coords"][0]) for a in page.evaluate("() => annotome.annotations()")
    )
    for (x, y), (_, (z, vy, vx)) in zip(clicks, stored, strict=True):
        drawn_z, drawn_parity = decode(grey[int(y - panel["y"]), int(x - panel["x"])])
        assert round(z) == drawn_z == middle[0], (z, drawn_z)
        assert (round(vy) + round(vx)) % 2 == drawn_parity, (vy, vx, drawn_parity, (x, y))

    # The proofreading queue opens on a detection's centroid: the section holding it.
    detections_build_now(segmentation)
    users.create_user("rev", password=PASSWORD)
    queue = proofreading_services.campaign_create(
        owner,
        segmentation,
        CampaignSettings(name="Sections queue", seed=5),
        members=[("rev", "reviewer")],
    )
    browser_context.clear_cookies()
    login(page, live_server.url, "rev", f"/proofreading/{queue.id}/")
    page.wait_for_function("() => annotome.current() !== undefined", timeout=READY_MS)
    page.evaluate("() => annotome.settled()")
    item = page.evaluate("() => annotome.current()")
    centroid_z = item["detection"]["centroid_z"]
    assert view_position(page)[2] == pytest.approx(centroid_z, abs=1e-3)
    assert page.evaluate(CENTRES_AT_INTEGERS) == [True, True, True]
    grey, _ = raw_xy_panel(page, artifacts_dir, "queue")
    assert shown_section(grey) == int(np.floor(centroid_z + 0.5))

    # The disector opens on a pair's reference section and Tab flips to its look-up section.
    study = stereology_services.study_create(
        owner, queue, name="Sections", n_pairs=2, h_um=1, seed=1
    )
    first = study.pairs[0]
    page.goto(f"{live_server.url}/stereology/{study.id}/")
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    assert view_position(page)[2] == first["reference"]
    grey, _ = raw_xy_panel(page, artifacts_dir, "disector-reference")
    assert shown_section(grey) == first["reference"]
    page.click("#disector-panel h2")  # keys go to the page
    page.keyboard.press("Tab")
    page.wait_for_function(
        "(z) => annotome.viewer().state.toJSON().position[2] === z", arg=first["lookup"]
    )
    grey, _ = raw_xy_panel(page, artifacts_dir, "disector-lookup")
    assert shown_section(grey) == first["lookup"]
