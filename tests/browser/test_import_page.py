"""The import page in a real Chromium: upload, a real Celery worker imports, the bars move.

Log in through the form, fill ``/datasets/import/`` (a TIFF volume and a label image), submit,
watch the upload bar and then the job bar (the worker slows each progress report down with
``ANNOTOME_TEST_PROGRESS_DELAY`` so the page can see the job part-way), follow the success link
to the viewer. A garbage file gets a clear message and creates nothing.
"""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from celery_harness import LiveWorker
from django.contrib.auth import get_user_model

from webapp.datasets.models import Dataset, DatasetJob

DSB2018_IMAGE = Path(__file__).resolve().parents[1] / "data" / "dsb2018_2d" / "img2d_crop.tif"

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PASSWORD = "importer-pass-123"
JOB_TIMEOUT_S = 45


def _spheres(path: Path, labels_path: Path) -> None:
    """48x64x64 uint16 volume with eight bright balls (noisy background), and their ids.

    Meshing reports once per object: eight give the job bar room to be seen part-way.
    """
    shape = (48, 64, 64)
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    balls = [
        (12, 14, 14, 7), (12, 14, 46, 6), (12, 46, 16, 6), (14, 48, 48, 7),
        (34, 16, 16, 6), (34, 14, 48, 7), (32, 46, 18, 7), (36, 48, 48, 6),
    ]  # fmt: skip
    for label, (cz, cy, cx, r) in enumerate(balls, 1):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = label
    rng = np.random.default_rng(11)
    image = rng.normal(300, 30, shape) + (labels > 0) * 2500
    tifffile.imwrite(path, image.clip(0, 65535).astype(np.uint16))
    tifffile.imwrite(labels_path, labels)


def _login(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/?next=/datasets/import/")
    page.fill("#id_username", "importer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/datasets/import/")


def _job_bar(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => { const bar = document.getElementById('job-progress');
          return {value: bar.hasAttribute('value') ? bar.value : null,
                  caption: document.getElementById('job-caption').textContent,
                  status: document.getElementById('import-status').textContent}; }"""
    )


@pytest.mark.worker_env(ANNOTOME_TEST_PROGRESS_DELAY="0.4")
def test_import_page_uploads_shows_job_progress_and_opens_the_viewer(
    celery_worker: LiveWorker,
    live_server: Any,
    browser_context: Any,
    settings: Any,
    tmp_path: Path,
    artifacts_dir: Path,
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20  # let the live server's threads finish
    get_user_model().objects.create_user("importer", password=PASSWORD)
    volume, labels = tmp_path / "spheres.tif", tmp_path / "nuclei.tif"
    _spheres(volume, labels)
    page = browser_context.new_page()
    _login(page, live_server.url)
    assert page.is_hidden("#import-cancel") and page.is_hidden("#upload-block")
    assert page.is_hidden("#job-block")

    # A garbage file: the page says why, in words, and nothing is created.
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"this is not a TIFF at all\n" * 200)
    page.set_input_files("#import-file", str(broken))
    assert page.input_value("#import-name") == "broken"  # filled in from the file name
    page.click("#import-submit")
    page.wait_for_selector("#import-status.error", timeout=JOB_TIMEOUT_S * 1000)
    page.wait_for_function("() => !document.getElementById('import-submit').disabled")
    assert page.is_hidden("#import-cancel") and page.is_hidden("#job-block")
    message = page.text_content("#import-status") or ""
    assert "broken.tif" in message, message
    assert "Traceback" not in message and "HTTP 500" not in message and len(message) < 400
    page.screenshot(path=str(artifacts_dir / "import-broken.png"), full_page=True)
    assert not Dataset.objects.exists() and not DatasetJob.objects.exists()
    assert not any(Path(settings.UPLOAD_ROOT).iterdir()), "the rejected upload was kept"

    # The real thing: volume, voxel size, unit, and one label image.
    page.fill("#import-name", "Browser spheres")
    page.set_input_files("#import-file", str(volume))
    page.fill("input[name=voxel_z]", "0.4")
    page.fill("input[name=voxel_y]", "0.2")
    page.fill("input[name=voxel_x]", "0.2")
    page.select_option("select[name=unit]", "micrometer")
    page.click("#add-label")
    page.fill("#label-rows .label-row input[type=text]", "nuclei")
    page.set_input_files("#label-rows .label-row input[type=file]", str(labels))
    page.click("#import-submit")

    page.wait_for_selector("#upload-block", state="visible", timeout=5_000)
    page.wait_for_selector("#job-block", state="visible", timeout=30_000)
    assert page.is_visible("#import-cancel") and page.is_disabled("#import-submit")
    assert page.is_disabled("#add-label") and page.is_disabled("#import-name")
    assert page.evaluate("() => document.getElementById('upload-progress').value") == 100
    assert page.text_content("#upload-caption") == "Upload complete."

    seen: list[dict[str, Any]] = []
    shot = False
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        state = _job_bar(page)
        seen.append(state)
        if not shot and state["value"] is not None and 0 < state["value"] < 100:
            page.screenshot(path=str(artifacts_dir / "import-progress.png"), full_page=True)
            shot = True
        if state["caption"] in {"Done.", "Failed.", "Cancelled."}:
            break
        assert time.monotonic() < deadline, f"job still going: {seen[-5:]}"
        page.wait_for_timeout(150)
    assert state["caption"] == "Done.", (state, celery_worker.process.log_text()[-3000:])
    values = [s["value"] for s in seen if s["value"] is not None]
    partway = [v for v in values if 0 < v < 100]
    assert partway, f"the job bar never showed the job part-way: {seen}"
    assert len(set(partway)) >= 2, f"the job bar did not move while the job ran: {seen}"
    assert any(0 < a < b for a, b in pairwise(values)), values
    captions = {s["caption"] for s in seen}
    assert any("%" in c for c in captions), captions  # "stage — 40 % (2 of 5)"

    link = page.locator("#import-status a")
    assert "Import finished." in (page.text_content("#import-status") or "")
    assert link.text_content() == "Open Browser spheres in the viewer"
    page.screenshot(path=str(artifacts_dir / "import-done.png"), full_page=True)
    assert page.is_hidden("#import-cancel") and page.is_enabled("#import-submit")

    dataset = Dataset.objects.get()
    assert dataset.name == "Browser spheres"
    assert sorted(dataset.layers.values_list("kind", flat=True)) == [
        "image",
        "mesh",
        "segmentation",
    ]
    image_layer = dataset.layers.get(kind="image")
    assert list(image_layer.shape)[-3:] == [48, 64, 64]
    assert list(image_layer.voxel_size)[-3:] == [0.4, 0.2, 0.2]
    assert image_layer.unit == "micrometer"
    assert link.get_attribute("href").rstrip("/").endswith(f"/datasets/{dataset.slug}")

    link.click()
    page.wait_for_url(f"**/datasets/{dataset.slug}/")
    assert "Browser spheres" in (page.text_content("h1.viewer-title") or "")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    layer_names = page.evaluate("() => annotome.state.layers.map((l) => l.name)")
    assert "nuclei" in layer_names, layer_names

    # A 2D image: its voxel size is y and x alone (z left empty).
    page.goto(f"{live_server.url}/datasets/import/")
    page.set_input_files("#import-file", str(DSB2018_IMAGE))
    page.fill("input[name=voxel_y]", "100")
    page.fill("input[name=voxel_x]", "100")
    page.select_option("select[name=unit]", "nanometer")
    page.click("#import-submit")
    page.wait_for_function(
        "() => /Import finished|failed|error/i.test("
        "document.getElementById('import-status').textContent)",
        timeout=JOB_TIMEOUT_S * 1000,
    )
    assert "Import finished." in (page.text_content("#import-status") or "")
    flat = Dataset.objects.get(name="img2d_crop").layers.get(kind="image")
    assert (flat.axes, flat.shape, flat.voxel_size) == (["y", "x"], [256, 256], [100.0, 100.0])
