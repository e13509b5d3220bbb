"""Log in, open a dataset in the embedded Neuroglancer, check what it draws, copy a link."""

from __future__ import annotations

import colorsys
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from PIL import Image

from webapp.datasets.models import ShareLink, Visibility
from webapp.viewer.models import SavedState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
PASSWORD = "owner-pass-123"


def panel_pixels(page: Any, index: int, path: Path) -> np.ndarray:
    """Screenshot of Neuroglancer's ``index``-th rendered panel (page coordinates), as RGB."""
    box = page.evaluate(
        """(i) => {
          const frame = document.getElementById('neuroglancer');
          const f = frame.getBoundingClientRect();
          const panels = frame.contentDocument
            .querySelectorAll('.neuroglancer-rendered-data-panel');
          const r = panels[i].getBoundingClientRect();
          return {x: f.x + r.x, y: f.y + r.y, width: r.width, height: r.height};
        }""",
        index,
    )
    png = page.screenshot(path=str(path), clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def saturated_hues(rgb: np.ndarray, min_pixels: int = 40) -> tuple[int, int]:
    """(number of 30-degree hue bins with at least ``min_pixels`` saturated pixels, their total)."""
    flat = rgb.reshape(-1, 3).astype(np.float32) / 255
    hsv = np.array([colorsys.rgb_to_hsv(*px) for px in flat[::3]])  # every 3rd pixel is plenty
    mask = (hsv[:, 1] > 0.35) & (hsv[:, 2] > 0.3)
    bins = np.bincount((hsv[mask, 0] * 12).astype(int) % 12, minlength=12)
    return int((bins >= min_pixels).sum()), int(mask.sum())


# What a segmentation layer's mesh render layers hold: whether each source is multi-resolution
# (its metadata carries the vertex quantization), manifests loaded, and how many segments have
# fragments in GPU memory (ChunkState.GPU_MEMORY is 0).
MESH_CHUNKS_JS = """(name) => {
  const layer = annotome.viewer().layerManager.getLayerByName(name).layer;
  const out = {multiscale: [], manifests: 0, segmentsWithFragmentsOnGpu: 0};
  for (const r of layer.renderLayers) {
    const source = r.source;
    if (!source || !source.fragmentSource) continue;
    const metadata = source.parameters && source.parameters.metadata;
    out.multiscale.push(!!(metadata && metadata.vertexQuantizationBits));
    out.manifests += source.chunks.size;
    const onGpu = new Set();  // fragment keys are "<segment id>/<lod>:<index>"
    for (const [key, chunk] of source.fragmentSource.chunks) {
      if (chunk.state === 0) onGpu.add(key.split('/')[0]);
    }
    out.segmentsWithFragmentsOnGpu += onGpu.size;
  }
  return out;
}"""


def wait_ready(page: Any) -> list[Any]:
    """Wait for the page's state to load and every visible chunk to be drawn; layer errors."""
    errors = page.evaluate("() => annotome.ready.then((r) => r.errors)")
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    return errors


def view_summary(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => { const s = annotome.viewer().state.toJSON();
          return {position: s.position, crossSectionScale: s.crossSectionScale,
                  projectionScale: s.projectionScale, layout: s.layout,
                  layers: s.layers.map((l) => [l.name, l.segments || null])}; }"""
    )


def test_login_view_meshes_slices_and_copy_link(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20  # let the live server's threads finish
    owner = get_user_model().objects.create_user("owner", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PRIVATE)
    page = browser_context.new_page()
    failed_requests: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed_requests.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/c/" not in r.url  # absent zarr chunks are 404 by design
            else None
        ),
    )

    # Log in through the real form; it sends us on to the (private) dataset's viewer.
    page.goto(f"{live_server.url}/accounts/login/?next=/datasets/nuclei/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/datasets/nuclei/")

    assert wait_ready(page) == []
    report = page.evaluate("() => annotome.layerReport()")
    assert [r["name"] for r in report] == ["image", "nuclei"]
    assert all(r["loaded"] and not r["errors"] for r in report), report
    sources = page.evaluate(
        """() => annotome.viewer().layerManager.managedLayers.map((m) =>
             m.layer.dataSources.map((d) => [d.spec.url, !!d.loadState && !d.loadState.error]))"""
    )
    assert [len(s) for s in sources] == [1, 2]  # labels and meshes in one layer
    assert all(ok for layer in sources for _, ok in layer), sources
    assert page.is_hidden("#viewer-error")
    visible = page.evaluate(
        """() => annotome.viewer().layerManager.getLayerByName('nuclei').layer
             .displayState.segmentationGroupState.value.visibleSegments.size"""
    )
    assert visible == len(page.evaluate("() => annotome.state.layers[1].segments")) >= 10
    # The meshes come from the sharded multi-resolution source: a manifest for every visible
    # segment and at least one Draco fragment each, uploaded to the GPU.
    meshes = page.evaluate(MESH_CHUNKS_JS, "nuclei")
    assert meshes["multiscale"] == [True], meshes
    assert meshes["manifests"] == visible, meshes
    assert meshes["segmentsWithFragmentsOnGpu"] == visible, meshes

    # Slice panel (xy, top left): image texture plus segment colours.
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "viewer.png"))
    xy = panel_pixels(page, 0, artifacts_dir / "xy-panel.png")
    gray = xy.mean(axis=2)
    assert gray.std() > 15, "slice panel looks blank"
    hues, coloured = saturated_hues(xy)
    assert hues >= 3 and coloured > 500, (hues, coloured)

    # 3D panel alone, without the cross-sections: whatever colour it has comes from meshes.
    page.evaluate("() => annotome.viewer().state.restoreState({layout: '3d', showSlices: false})")
    page.wait_for_timeout(200)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.wait_for_timeout(300)
    meshes = panel_pixels(page, 0, artifacts_dir / "3d-panel.png")
    hues, coloured = saturated_hues(meshes)
    assert hues >= 4 and coloured > 0.03 * meshes.shape[0] * meshes.shape[1] / 3, (hues, coloured)

    # Change the view (camera and selected segments), copy a link, reopen it in a new page.
    page.evaluate(
        """() => { const v = annotome.viewer();
          const vs = v.layerManager.getLayerByName('nuclei').layer
            .displayState.segmentationGroupState.value.visibleSegments;
          vs.clear(); vs.add(3n); vs.add(5n);
          v.state.restoreState({layout: '4panel', showSlices: true, position: [30, 40, 50],
                                crossSectionScale: 0.5, projectionScale: 150}); }"""
    )
    before = view_summary(page)
    assert before["position"] == [30, 40, 50]
    page.click("#copy-link")
    page.wait_for_function("() => document.getElementById('copy-link-url').value", timeout=20_000)
    url = page.input_value("#copy-link-url")
    assert url.startswith(f"{live_server.url}/datasets/nuclei/?state=")

    reopened = browser_context.new_page()
    reopened.goto(url)
    assert wait_ready(reopened) == []
    assert view_summary(reopened) == before
    reopened.screenshot(path=str(artifacts_dir / "reopened.png"))
    reopened.close()

    # A share link shows the same data through /s/<token>/data/ URLs.
    link = ShareLink.objects.create(dataset=dataset, created_by=owner)
    shared = browser_context.new_page()
    shared.goto(f"{live_server.url}/s/{link.token}/datasets/nuclei/")
    assert wait_ready(shared) == []
    shared_sources = shared.evaluate(
        """() => annotome.viewer().layerManager.managedLayers.flatMap((m) =>
             m.layer.dataSources.map((d) => d.spec.url))"""
    )
    assert len(shared_sources) == 3
    assert all(f"/s/{link.token}/data/nuclei/" in url for url in shared_sources), shared_sources
    shared.close()

    # A layer whose data is missing is reported in the page's error banner.
    before_state = SavedState.objects.get(key=url.rsplit("=", 1)[1]).state
    broken = SavedState.objects.create(
        dataset=dataset,
        state={
            **before_state,
            "layers": [
                *before_state["layers"],
                {
                    "type": "image",
                    "name": "missing",
                    "source": f"zarr3://{live_server.url}/data/nuclei/missing.ome.zarr",
                },
            ],
        },
    )
    failing = browser_context.new_page()
    failing.goto(f"{live_server.url}/datasets/nuclei/?state={broken.key}")
    errors = failing.evaluate("() => annotome.ready.then((r) => r.errors)")
    assert [e["name"] for e in errors] == ["missing"]
    assert "missing" in failing.inner_text("#viewer-error")
    failing.close()

    # The dataset list shows the card with its rendered thumbnail.
    page.goto(f"{live_server.url}/")
    page.wait_for_function(
        "() => { const i = document.querySelector('.dataset-card img'); "
        "return i && i.complete && i.naturalWidth === 256; }",
        timeout=30_000,
    )
    page.screenshot(path=str(artifacts_dir / "dataset-list.png"))
    assert [r for r in failed_requests if "missing.ome.zarr" not in r] == []


def test_large_dataset_opens_without_selection_and_loads_meshes_on_demand(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    """Past VIEWER_DEFAULT_SEGMENTS objects nothing is selected at open (no mesh requests), the
    2D panels still colour every object, and a selected object's mesh then loads and is drawn."""
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    settings.VIEWER_DEFAULT_SEGMENTS = 5
    owner = get_user_model().objects.create_user("owner", password=PASSWORD)
    build_nuclei_dataset(owner, slug="many", visibility=Visibility.PUBLIC)
    page = browser_context.new_page()
    mesh_requests: list[str] = []
    page.on("request", lambda r: mesh_requests.append(r.url) if "/meshes/" in r.url else None)
    page.goto(f"{live_server.url}/datasets/many/")
    assert wait_ready(page) == []
    assert page.evaluate("() => annotome.state.layers[1].segments") == []
    # mesh + properties (the source's URLs carry its version query, ``?v=``)
    assert [u.split("?")[0].rsplit("/", 1)[1] for u in mesh_requests] == ["info", "info"]
    assert all("?v=" in u for u in mesh_requests)
    xy = panel_pixels(page, 0, artifacts_dir / "xy-no-selection.png")
    hues, coloured = saturated_hues(xy)
    assert hues >= 3 and coloured > 500, (hues, coloured)  # every object still coloured

    page.evaluate(
        """() => { const vs = annotome.viewer().layerManager.getLayerByName('nuclei').layer
             .displayState.segmentationGroupState.value.visibleSegments;
           vs.add(2n); vs.add(5n); vs.add(11n); }"""
    )
    page.wait_for_timeout(200)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    meshes = page.evaluate(MESH_CHUNKS_JS, "nuclei")
    assert meshes == {"multiscale": [True], "manifests": 3, "segmentsWithFragmentsOnGpu": 3}
    assert any(u.split("?")[0].endswith(".shard") for u in mesh_requests)
    page.evaluate("() => annotome.viewer().state.restoreState({layout: '3d', showSlices: false})")
    page.wait_for_timeout(200)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.wait_for_timeout(300)
    drawn = panel_pixels(page, 0, artifacts_dir / "3d-three-meshes.png")
    hues, coloured = saturated_hues(drawn, min_pixels=20)
    assert hues >= 2 and coloured > 300, (hues, coloured)
