"""Painted labels in Neuroglancer: labels saved through the API show on the task page as the
"painted labels" segmentation layer, its voxels in the slices and its objects' meshes in 3D, and
a new version shows in place (``showLabelsVersion``, what follows a save) fetching the changed
chunk and the changed object's mesh and nothing else (counted on the server's side); a save
from the page's painting editor shows in the layer by itself. The reviewer's page then shows
the annotator's painted labels as a layer with meshes too.

The nuclei volume is 96^3 voxels and the box covers it, so its labels are 2 x 2 x 2 chunks (64^3
clipped to the box). The view is at the box's centre (48, 48, 48): the three slices cross every
chunk but (1, 1, 1). Object 1 lies in chunk (0, 0, 0), object 2 in chunk (0, 1, 1); the second
save grows object 2 within its chunk.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.signals import request_started
from nuclei_dataset import build_nuclei_dataset
from rest_framework.test import APIClient
from viewer_mouse import READY_MS, failed_responses, viewer_ready

from webapp.annotation import selectors, services
from webapp.annotation.models import AnnotationCampaign, Assignment, Role
from webapp.datasets.models import Layer, LayerKind, Visibility

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "paint-pass-123"
LAYER = "painted labels"  # frontend/src/annotation_task/labels_layer.ts
PAINT_READY = "() => annotome.paint !== null && annotome.paint.ready.then(() => true)"
SIDE = 96


def make_campaign(owner: Any, annotator: Any) -> AnnotationCampaign:
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
    voxel = services.layer_geometry(layer)["voxel_size_um"]
    spec = services.CampaignSpec(
        name="Painted nuclei",
        label_schema=[{"name": "nucleus", "label": "Nucleus", "colour": "#ffcc00", "key": "1"}],
        box_size_um=[SIDE * v for v in voxel],
        painted=True,
    )
    campaign = services.campaign_create(owner, dataset, layer, spec)
    services.member_add(campaign, owner, annotator.username, Role.ANNOTATOR)
    services.boxes_tile(campaign, owner)
    return campaign


def ball(centre: tuple[int, int, int], radius: float, shape: tuple[int, ...]) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    inside: np.ndarray = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (
        xx - centre[2]
    ) ** 2 <= radius**2
    return inside


def chunk_part(array: np.ndarray) -> io.BytesIO:
    part = io.BytesIO(np.ascontiguousarray(array, dtype="<u4").tobytes())
    part.name = "chunk"
    return part


def save(api: APIClient, row: Assignment, base: int, chunks: dict[str, np.ndarray]) -> list[str]:
    """Save chunks through the API; the new version's Neuroglancer sources."""
    form: dict[str, Any] = {"base_version": str(base)}
    form.update((key, chunk_part(array)) for key, array in chunks.items())
    answer = api.post(f"/api/v1/annotation/assignments/{row.pk}/labels/", form, format="multipart")
    assert answer.status_code == 200, answer.content
    state = api.get(f"/api/v1/annotation/assignments/{row.pk}/labels/").json()
    assert state["version"] == base + 1
    sources: list[str] = state["neuroglancer_sources"]
    return sources


# The painted layer as Neuroglancer holds it: its sources' URLs and load states, whether each
# source's "bounds" subsource (the volume's yellow outline) is enabled, and the segments shown.
LAYER_STATE = """(name) => {
  const managed = annotome.viewer().layerManager.getLayerByName(name);
  const layer = managed && managed.layer;
  if (!layer) return null;
  const sources = layer.dataSources.map((s) => ({
    url: s.spec.url,
    loaded: s.loadState !== undefined,
    error: s.loadState && s.loadState.error ? String(s.loadState.error) : null,
    bounds: s.loadState && s.loadState.subsources
      ? s.loadState.subsources.filter((u) => u.subsourceEntry.id === "bounds").map((u) => u.enabled)
      : [],
  }));
  const visible = layer.displayState.segmentationGroupState.value.visibleSegments;
  return {sources, segments: Array.from(visible, (id) => String(id)).sort()};
}"""

# True once every source of the layer has loaded (its subsources, the bounds outline among them,
# are known only then).
SOURCES_LOADED = (
    "(name) => { const state = (" + LAYER_STATE + ")(name);"
    " return !!state && state.sources.length > 0 && state.sources.every((s) => s.loaded); }"
)


# True once the layer's mesh render layer holds `n` manifests and `n` fragments on the GPU
# (Neuroglancer's ChunkState.GPU_MEMORY is 0): the objects are drawn in the 3D view. The mesh
# render layer is the one whose source has a fragment source (class names are minified).
MESHES_LOADED = """([name, n]) => {
  const layer = annotome.viewer().layerManager.getLayerByName(name).layer;
  for (const rl of layer.renderLayers) {
    const source = rl.source;
    if (!source || !source.fragmentSource) continue;
    const manifests = Array.from(source.chunks.values()).filter((c) => c.fragmentIds);
    const onGpu = Array.from(source.fragmentSource.chunks.values()).filter(
      (c) => c.state === 0 && c.vertexBuffer);
    return manifests.length >= n && onGpu.length >= n;
  }
  return false;
}"""


def paint_colour(object_id: int) -> str:
    """The Paint tab's colour of an object (frontend/src/label_editor/render.ts's ``colourOf``,
    the same 32-bit hash) as Neuroglancer's "#rrggbb"."""
    word = 0xFFFFFFFF
    h = ((object_id ^ 0x9E3779B9) * 0x85EBCA6B) & word
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & word
    h ^= h >> 16
    rgb = h & 0xFFFFFF
    if (rgb >> 16 & 255) + (rgb >> 8 & 255) + (rgb & 255) < 240:
        rgb |= 0x808080
    return f"#{rgb:06x}"


# The colours Neuroglancer gives a layer's segments (its own state JSON).
SEGMENT_COLOURS = """(name) => (annotome.viewer().state.toJSON().layers
  .find((l) => l.name === name) || {}).segmentColors || {}"""


def assert_paint_colours(page: Any, layer: str, ids: list[str]) -> None:
    """Every object of the layer in the colour the Paint tab draws it in."""
    colours = page.evaluate(SEGMENT_COLOURS, layer)
    assert colours == {i: paint_colour(int(i)) for i in ids}, colours


def assert_bounds_hidden(state: dict[str, Any]) -> None:
    """The labels volume has a bounds outline and it is off: it would lie on the task box's
    cyan outline and hide it; the mesh source has none to show."""
    volume, *others = state["sources"]
    assert volume["bounds"] == [False], state
    assert not any(any(s["bounds"]) for s in others), state


@pytest.fixture
def served() -> Iterator[list[str]]:
    """The paths the live server is asked for, in order: what the browser did not take from its
    cache (the server's side, which the page cannot fake)."""
    paths: list[str] = []

    def record(sender: Any, environ: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if environ is not None:
            paths.append(str(environ.get("PATH_INFO", "")))

    request_started.connect(record, dispatch_uid="painted-label-meshes")
    yield paths
    request_started.disconnect(dispatch_uid="painted-label-meshes")


def test_painted_labels_show_with_meshes_and_a_new_version_fetches_only_what_changed(
    live_server: Any, browser_context: Any, settings: Any, served: list[str]
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann)
    row = services.next_task(campaign, ann)
    assert row is not None and list(row.box.size) == [SIDE] * 3
    api = APIClient(HTTP_HOST=live_server.url.split("://", 1)[1])  # the page's absolute URLs
    api.force_login(ann)
    first = np.zeros((64, 64, 64), np.uint32)
    first[ball((48, 40, 40), 10, first.shape)] = 1
    second = np.zeros((64, 32, 32), np.uint32)  # chunk (0, 1, 1): z 0-63, y and x 64-95
    second[ball((48, 14, 14), 7, second.shape)] = 2
    v1_sources = save(api, row, 0, {"0.0.0": first, "0.1.1": second})
    assert len(v1_sources) == 2

    page = browser_context.new_page()
    failed = failed_responses(page)
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{live_server.url}/accounts/login/?next=/annotation/task/{row.pk}/")
    page.fill("#id_username", "ann")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/annotation/task/*/")
    viewer_ready(page)
    page.wait_for_function(SOURCES_LOADED, arg=LAYER, timeout=READY_MS)
    state = page.evaluate(LAYER_STATE, LAYER)
    assert [s["url"] for s in state["sources"]] == v1_sources
    assert all(s["loaded"] and s["error"] is None for s in state["sources"])
    assert_bounds_hidden(state)
    assert state["segments"] == ["1", "2"]
    # No layer of the task page outlines its volume in yellow: the image's outline lay on the
    # task box's edges where they are the volume's faces, and hid them.
    outlines = page.evaluate(
        """() => annotome.viewer().layerManager.managedLayers.flatMap((m) =>
             m.layer ? m.layer.dataSources.flatMap((s) => (s.loadState && s.loadState.subsources
               ? s.loadState.subsources : []).filter((u) => u.subsourceEntry.id === "bounds")
               .map((u) => [m.name, u.enabled])) : [])"""
    )
    assert outlines and not [o for o in outlines if o[1]], outlines
    # A painted task paints in its Paint tab: the Neuroglancer tab opens for looking, with no
    # point tool armed (a click there would drop a point) and the layer panel closed.
    opened = page.evaluate(
        """() => { const s = annotome.viewer().state.toJSON();
             return {selected: s.selectedLayer || {},
                     tool: (s.layers.find((l) => l.name === "annotations") || {}).tool || null,
                     pressed: document.querySelectorAll("[data-tool][aria-pressed=true]").length};
           }"""
    )
    assert opened["tool"] is None and opened["pressed"] == 0, opened
    assert not opened["selected"].get("visible"), opened
    # Neuroglancer fetched the painted chunks (redirected to their blobs) and both objects'
    # meshes (manifest, then fragment by content key), and drew them.
    base = f"/api/v1/annotation/assignments/{row.pk}/labels/"
    wanted = {"chunks": 2, "fragments": 2}
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
        len({p for p in served if p.startswith(f"{base}{kind}/")}) < n for kind, n in wanted.items()
    ):
        time.sleep(0.2)
    v1_chunks = {p.rsplit("s0/", 1)[1] for p in served if re.fullmatch(rf"{base}v1/s0/\d/\d/\d", p)}
    assert v1_chunks >= {"0/0/0", "0/1/1"}, served
    assert len({p for p in served if p.startswith(f"{base}chunks/")}) == 2, served
    assert {p for p in served if p.startswith(f"{base}v1/meshes/")} >= {
        f"{base}v1/meshes/info",
        f"{base}v1/meshes/1:0",
        f"{base}v1/meshes/2:0",
    }
    assert len({p for p in served if p.startswith(f"{base}fragments/")}) == 2, served
    assert not [f for f in failed if "/fragments/" in f or "/meshes/" in f or "/chunks/" in f]
    # Both objects are on the GPU: their mesh fragments are loaded in the 3D view.
    page.wait_for_function(MESHES_LOADED, arg=[LAYER, 2], timeout=READY_MS)

    grown = second.copy()
    grown[ball((48, 14, 14), 11, grown.shape)] = 2
    v2_sources = save(api, row, 1, {"0.1.1": grown})
    changed_blob = (
        f"{base}chunks/" + selectors.labels_at(Assignment.objects.get(pk=row.pk)).chunks[(0, 1, 1)]
    )
    before = len(served)
    page.evaluate("(s) => annotome.showLabelsVersion(s)", v2_sources)
    page.wait_for_function(
        """(urls) => {
          const layer = annotome.viewer().layerManager.getLayerByName("painted labels").layer;
          return layer.dataSources.every((s, i) => s.spec.url === urls[i] && s.loadState);
        }""",
        arg=v2_sources,
        timeout=READY_MS,
    )
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.wait_for_function(MESHES_LOADED, arg=[LAYER, 2], timeout=READY_MS)
    time.sleep(1.0)  # anything late would show up here
    after = served[before:]
    state = page.evaluate(LAYER_STATE, LAYER)
    assert [s["url"] for s in state["sources"]] == v2_sources
    assert all(s["loaded"] and s["error"] is None for s in state["sources"])
    assert_bounds_hidden(state)
    assert state["segments"] == ["1", "2"]
    # Chunk data and mesh fragments downloaded after the swap: the changed chunk's blob and the
    # changed object's fragment, nothing else (object 1 and chunk 0.0.0 came from the cache).
    assert [p for p in after if p.startswith(f"{base}chunks/")] == [changed_blob], after
    fragments_after = [p for p in after if p.startswith(f"{base}fragments/")]
    assert len(fragments_after) == 1, after
    manifest_2 = api.get(f"{base}v2/meshes/2:0").json()["fragments"][0]
    assert fragments_after[0].endswith(manifest_2.rsplit("/", 1)[1])
    # The image layer was left alone: no image data was asked for again.
    assert not [p for p in after if "/data/" in p], after

    # A save from the page's painting editor shows in the layer by itself: a new object.
    page.reload()
    viewer_ready(page)
    page.wait_for_function(PAINT_READY, timeout=READY_MS)
    assert page.evaluate("() => annotome.paint.version()") == 2
    new_id = page.evaluate(
        """() => {
          const e = annotome.paint.editor;
          const id = e.newObject();
          e.setRadius(4);
          e.press("xy", 20, 70);
          e.release();
          return id;
        }"""
    )
    page.evaluate("() => annotome.paint.save()")
    page.wait_for_function("() => annotome.paint.version() === 3", timeout=10_000)
    v3_sources = api.get(base).json()["neuroglancer_sources"]
    assert v3_sources[0].endswith("/labels/v3/")
    page.wait_for_function(
        "([name, urls]) => JSON.stringify((" + LAYER_STATE + ")(name).sources.map((s) => s.url))"
        " === JSON.stringify(urls)",
        arg=[LAYER, v3_sources],
        timeout=READY_MS,
    )
    page.wait_for_function(
        "([name, id]) => (" + LAYER_STATE + ")(name).segments.includes(String(id))",
        arg=[LAYER, new_id],
        timeout=READY_MS,
    )
    page.wait_for_function(MESHES_LOADED, arg=[LAYER, 3], timeout=READY_MS)
    # The meshes may come before the new volume source's metadata: wait for every source.
    page.wait_for_function(SOURCES_LOADED, arg=LAYER, timeout=READY_MS)
    assert page.evaluate("() => annotome.errors") == []
    assert_bounds_hidden(page.evaluate(LAYER_STATE, LAYER))
    # The new object too, in the Paint tab's colour (set on the swap, not in the first state).
    assert_paint_colours(page, LAYER, ["1", "2", str(new_id)])
    # Back and forth between the tabs: Neuroglancer draws again, nothing throws (a viewer hidden
    # by display: none drew into 0 x 0 framebuffers: "Framebuffer configuration not supported").
    for tab in ("viewer", "paint", "viewer"):
        page.click(f"#tab-{tab}")
        page.wait_for_timeout(500)
        # Hidden or shown, the viewer keeps the size of the pane (not an iframe's 300 x 150).
        frame, pane = page.evaluate(
            """() => [document.getElementById("neuroglancer").getBoundingClientRect().width,
                      document.querySelector(".queue-layout").getBoundingClientRect().width]"""
        )
        assert frame > 400 and (tab == "viewer" or frame == pane), (tab, frame, pane)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    assert page_errors == []

    # The reviewer's page shows the annotator's painted labels as a layer too, with meshes.
    rv = users.create_user("rv", password=PASSWORD)
    services.member_add(campaign, owner, rv.username, Role.REVIEWER)
    services.submit(Assignment.objects.get(pk=row.pk), ann, 3)
    browser_context.clear_cookies()  # signed out: the login form is the page's only form
    page.goto(f"{live_server.url}/accounts/login/?next=/annotation/{campaign.pk}/review/")
    page.fill("#id_username", "rv")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/annotation/{campaign.pk}/review/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.loads() >= 1", timeout=READY_MS)
    page.evaluate("() => annotome.settled()")
    assert page.evaluate("() => annotome.errors") == []
    page.wait_for_function(SOURCES_LOADED, arg="ann · painted", timeout=READY_MS)
    state = page.evaluate(LAYER_STATE, "ann · painted")
    assert [s["url"] for s in state["sources"]] == v3_sources
    assert all(s["loaded"] and s["error"] is None for s in state["sources"])
    assert_bounds_hidden(state)
    assert state["segments"] == sorted(["1", "2", str(new_id)])
    assert_paint_colours(page, "ann · painted", state["segments"])
    page.wait_for_function(MESHES_LOADED, arg=["ann · painted", 3], timeout=READY_MS)
    print(f"requests after the swap ({len(after)}):", *after, sep="\n  ")
