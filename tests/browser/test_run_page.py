"""A retraining run from the pages, in real Chromium against a live server with a real Celery
worker: a manager of a painted campaign reads on its page's Retrain panel the ground truth a run
will take (5 approved boxes, 1 held out; reached from the dataset viewer's "Retrain"), starts a run
with the tiny preset, lands on the run's page, sees a stage's progress bar move and the training
loss curve drawn as uPlot data, waits for success (the held-out evaluation shown, polling stopped;
its F1 above a floor), finds what it published (a segmentation layer with meshes and its
probability map, the detections' mean probabilities, a model version whose file downloads, no files
left in temporary space), and opens the published layer in the viewer: Neuroglancer's state holds
it, shown; back on the campaign page, "Suggest next boxes" with the new model puts two boxes first
(outlined on the coverage map). The owner opens a proofreading campaign on the version's
detections. Before the run, automatic retraining is turned on and off from the panel. No page
throws. (``tests/integration/test_runs.py`` cancels one.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery_harness import LiveWorker, wait_for

from pipeline.ome_zarr_io import open_multiscale
from tests.runs_testdata import client, people, retrain_campaign
from webapp.annotation.models import TaskBox
from webapp.datasets.models import Layer, LayerKind
from webapp.detections.models import Detection
from webapp.runs.models import AutoRetrain, ModelVersion

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]
PASSWORD = "run-page-pass-123"
READY_MS = 90_000
RUN_SECONDS = 420  # about 1 min alone on 2 cores; generous for a loaded machine
#: Object F1 on the held-out box: the tiny preset reached 0.67 (3 of 6 objects, none false) on
#: this data; a model that learned nothing finds no object (F1 0).
F1_FLOOR = 0.3
# The bars the page drew: stage -> [aria-valuenow, data-state], read from the DOM.
BARS_JS = """() => Object.fromEntries([...document.querySelectorAll('.run-stage')].map((li) =>
  [li.dataset.stage, [Number(li.querySelector('.stage-bar').getAttribute('aria-valuenow')),
   li.dataset.state]]))"""
# The words beside running bars: a part of a stage counts under its own name ("meshing: 3 / 8").
CAPTIONS_JS = """() => [...document.querySelectorAll(
  '.run-stage[data-state=running] .stage-caption')].map((e) => e.textContent)"""
PARTS = {"training steps", "predict validation boxes", "fit segmentation", "watershed", "merge",
         "relabel", "measuring", "meshing", "uncertainty", "layers"}  # fmt: skip


def test_a_manager_starts_a_run_watches_it_and_opens_its_layer(
    celery_worker: LiveWorker,
    live_server: Any,
    browser_context: Any,
    settings: Any,
    artifacts_dir: Path,
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    who = people()
    who["manager"].set_password(PASSWORD)
    who["manager"].save()
    campaign, _ = retrain_campaign(who, approved=5)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # From the dataset's viewer, "Retrain" opens the campaign page at its Retrain panel: the
    # ground truth it will use, counted by the server.
    path = f"/annotation/{campaign.pk}/"
    viewer = f"/datasets/{campaign.dataset.slug}/"
    page.goto(f"{live_server.url}/accounts/login/?next={viewer}")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{viewer}")
    page.click("#retrain-link")
    page.wait_for_url(f"**{path}#retrain")
    page.evaluate("() => annotome.retrain.ready")
    assert page.locator("#retrain-title").is_visible()
    truth = page.locator("#retrain-truth")
    assert (truth.get_attribute("data-boxes"), truth.get_attribute("data-held-out")) == ("5", "1")
    assert "5 approved painted boxes; 1 held out for evaluation, 4 to train on" in " ".join(
        truth.inner_text().split()
    )
    assert page.locator("#runs-empty").is_visible()
    # The tiny preset as it is: fewer steps than its own fail the training's health check.
    page.select_option("#retrain-preset", "tiny")
    page.click("#retrain-overrides summary")
    assert (
        page.locator("input[data-param='training.max_epochs']").get_attribute("placeholder") == "6"
    )
    # Automatic retraining, off by default: turned on (every 50 boxes, this preset), then off.
    auto = page.locator("#auto-status")
    assert auto.get_attribute("data-enabled") == "false"
    page.check("#auto-enabled")
    page.fill("#auto-every", "50")
    page.click("#auto-save")
    page.wait_for_selector("#auto-status[data-enabled='true']")
    assert "every 50 boxes with the tiny preset, as manager" in auto.inner_text()
    policy = AutoRetrain.objects.get(campaign=campaign)
    assert (policy.every, policy.preset, policy.owner.username) == (50, "tiny", "manager")
    page.uncheck("#auto-enabled")
    page.click("#auto-save")
    page.wait_for_selector("#auto-status[data-enabled='false']")
    assert not AutoRetrain.objects.filter(campaign=campaign).exists()
    page.screenshot(path=str(artifacts_dir / "retrain-panel.png"), full_page=True)
    page.click("#retrain-start")
    page.wait_for_url("**/runs/*/", timeout=30_000)
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

    # The run page, live: bars move, the loss curve gets its points.
    page.evaluate("() => annotome.ready")
    assert "tiny" in page.locator(".run-facts").inner_text()
    seen: dict[str, set[int]] = {}
    parts_seen: set[str] = set()
    etas_seen: set[str] = set()
    curve_points_while_active = 0
    shot_while_running = False
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        status = page.evaluate("() => annotome.run().status")
        for stage, (value, state) in page.evaluate(BARS_JS).items():
            seen.setdefault(stage, set()).add(value)
            if state == "running" and 0 < value < 100 and not shot_while_running:
                page.screenshot(path=str(artifacts_dir / "run-page-running.png"), full_page=True)
                shot_while_running = True
        parts_seen.update(c.split(":")[0] for c in page.evaluate(CAPTIONS_JS) if ":" in c)
        etas_seen.add(page.inner_text("#run-eta"))
        if status in ("queued", "running", "retrying"):
            curve_points_while_active = max(
                curve_points_while_active, page.evaluate("() => annotome.chart.points()")
            )
        else:
            break
        assert time.monotonic() < deadline, f"the run did not end in {RUN_SECONDS} s: {seen}"
        time.sleep(0.25)
    page.wait_for_function("() => !annotome.polling()", timeout=10_000)
    run = page.evaluate("() => annotome.run()")
    page.screenshot(path=str(artifacts_dir / "run-page-ended.png"), full_page=True)
    assert run["status"] == "succeeded", (run["error"], run["stage"])
    assert run["id"] == run_id and run["preset"] == "tiny"
    assert run["params"] == {}
    assert parts_seen & PARTS, f"no stage named a part of its own: {parts_seen}"
    assert "training steps" in parts_seen, parts_seen
    # The header's time left names the part it counts: the training steps' ETA is not the
    # train stage's (predicting the validation boxes and the fit follow).
    assert not any(e.startswith("train: ") for e in etas_seen), etas_seen
    # A bar moved: some stage was seen part-way, or at least at two values, before it ended.
    moved = [
        s for s, values in seen.items() if len(values) >= 2 or any(0 < v < 100 for v in values)
    ]
    assert moved, seen
    assert all(v == [100, "done"] or v[1] == "skipped" for v in page.evaluate(BARS_JS).values())
    timed = {s["name"]: s["seconds"] for s in run["stages"] if s["state"] == "done"}
    assert "publish" in timed and all(v is not None and v >= 0 for v in timed.values()), timed
    # The curves: one point per epoch of the history, drawn on uPlot's canvas; some came live.
    assert curve_points_while_active >= 1
    # (the latest training attempt's epochs: a restart after a failed health check starts over)
    attempt = max(row.get("attempt") or 0 for row in run["history"])
    epochs = sum(1 for row in run["history"] if (row.get("attempt") or 0) == attempt)
    assert epochs >= 1 and page.evaluate("() => annotome.chart.points()") == epochs
    assert page.locator("#run-curves").get_attribute("data-points") == str(epochs)
    assert page.locator("#run-curves canvas").count() == 1
    assert page.evaluate("() => annotome.chart.draws()") >= 1
    # The held-out evaluation, with the run's scores.
    table = page.locator("#run-evaluation")
    assert table.is_visible()
    f1 = run["metrics"]["evaluation"]["all"]["f1"]
    assert table.locator("tr[data-variant='all'] td").nth(3).inner_text() == f"{f1:.3f}"
    assert f1 >= F1_FLOOR, run["metrics"]["evaluation"]
    assert not page.locator("#run-cancel").is_visible()  # ended: nothing to cancel
    # The log: a line per stage started and ended, with its figures, then what was published.
    log = page.inner_text("#run-log")
    assert log == run["log"] and not page.is_visible("#run-warnings"), log
    lines = [line.split(" ", 2)[2] for line in log.splitlines()]  # without date and time
    assert lines[0] == "export: started" and lines[1].startswith("export: done in "), lines
    assert any(line.startswith("train: done in ") and "validation F1" in line for line in lines), (
        lines
    )
    # What the train step does, part by part, is said as each starts.
    assert any(line.startswith("train: training steps (") for line in lines), lines
    assert any(line.startswith("train: fit segmentation (") for line in lines), lines
    segmented = run["metrics"]["segment"]["objects"]
    assert any(line.startswith("segment: done in ") and line.endswith(f": {segmented} objects")
               for line in lines), lines  # fmt: skip
    assert lines[-1] == (f"publish: {run['result_layer']}, model v1 is the dataset's current "
                         "model"), lines  # fmt: skip
    # Published: the layers, the model version and its file; the work directory is gone.
    published = Layer.objects.get(dataset=campaign.dataset, name=run["result_layer"])
    assert published.kind == LayerKind.SEGMENTATION
    mesh = Layer.objects.get(source_layer=published, kind=LayerKind.MESH)
    # Its segment properties: volume, surface, sphericity and each object's mean probability.
    info = json.loads((campaign.dataset.root / mesh.path / "segment_properties/info").read_text())
    numbers = {p["id"]: p["values"] for p in info["inline"]["properties"] if p["type"] == "number"}
    assert set(numbers) == {"volume_um3", "surface_um2", "sphericity", "mean_probability"}
    assert all(0.0 <= v <= 1.0 for v in numbers["mean_probability"]), numbers["mean_probability"]
    labels = np.asarray(open_multiscale(campaign.dataset.root / published.path).levels[0])
    assert labels.shape == tuple(campaign.geometry["shape"]) and labels.max() > 0
    model = ModelVersion.objects.get(dataset=campaign.dataset, number=1)
    assert (model.layer_id, model.run_id, run["model_id"]) == (published.pk, run_id, model.pk)
    assert (Path(settings.DATA_ROOT) / model.path).stat().st_size > 1000
    probability = Layer.objects.get(source_layer=published, kind=LayerKind.IMAGE)
    assert probability.name == f"{published.name}-probability"
    assert (campaign.dataset.root / probability.path).is_dir()
    # The detections table, built by the worker after the publication: each object's mean
    # foreground probability from that map.
    detections = Detection.objects.filter(layer=published)
    wait_for(lambda: detections.exists(), 120, "the new layer's detections table")
    means = list(detections.values_list("mean_probability", flat=True))
    assert means and all(m is not None and 0.0 <= m <= 1.0 for m in means), means[:5]
    # The loop closes: the dataset's owner opens a proofreading campaign on the new version's
    # detections in one request; its queue holds them.
    opened = client(who["owner"]).post(f"/api/v1/models/{model.pk}/proofreading/")
    assert opened.status_code == 201, opened.content
    assert 0 < opened.json()["items"] <= detections.count()
    leftover = Path(settings.DATA_ROOT) / "tmp" / f"run-{run_id}"
    assert not leftover.exists(), sorted(p.name for p in leftover.iterdir())
    assert page.locator("#run-model-download").inner_text() == "Model v1 (download)"

    # "Open in viewer": the dataset's viewer with the new layer, shown.
    layer = run["result_layer"]
    link = page.locator("#run-open")
    assert link.is_visible() and layer
    link.click()
    page.wait_for_url(f"**/datasets/{campaign.dataset.slug}/?show=*")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    state = page.evaluate("() => annotome.viewer().state.toJSON()")
    shown = {la["name"]: la.get("visible", True) for la in state["layers"]}
    assert shown.get(layer) is True, shown
    assert state["selectedLayer"]["layer"] == layer
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.screenshot(path=str(artifacts_dir / "run-viewer.png"))

    # Back on the campaign page, the run is listed with its status and links.
    page.goto(f"{live_server.url}{path}")
    page.evaluate("() => annotome.retrain.ready")
    row = page.locator(f"#runs-table tr[data-run='{run_id}']")
    assert row.get_attribute("data-state") == "succeeded"
    assert row.locator(f"a[href='/runs/{run_id}/']").count() == 1
    # "Suggest next boxes" with the new model (the current one): two boxes go first.
    assert page.locator("#suggest-model option:checked").inner_text() == "v1 (current)"
    page.fill("#suggest-count", "2")
    page.click("#suggest-start")
    page.wait_for_selector("#suggest-status[data-boxes='2']")
    assert "Model v1 suggests: " in page.inner_text("#suggest-status")
    assert TaskBox.objects.filter(campaign=campaign, priority__gt=0).count() == 2
    # The coverage map redraws at once: the two boxes outlined, counted in its legend.
    page.wait_for_selector("#coverage-svg rect[data-suggested]")
    assert page.locator("#coverage-svg rect[data-suggested]").count() == 2
    assert page.inner_text("#coverage-suggested-count") == "2"
    assert page.is_visible("#coverage-suggested")
    assert errors == [], errors
