"""Painted agreement and consensus in real Chromium (live server, PostgreSQL where the run has it).

A painted campaign (N = 2) over the synthetic nuclei image has one box of 32^3 voxels. a1 and a2
paint it through the services (the painting editor is another test's): one object both painted
(a2's one voxel to the side: IoU 0.818), one object each that the other did not paint, then
submit. The reviewer's review page shows the painted agreement (object P/R/F1 0.5, voxel Dice
0.699, mean matched IoU 0.818), the two objects left out of the consensus, and the consensus as
a Neuroglancer segmentation layer whose OME-Zarr files Neuroglancer reads; the reviewer
approves both. The manager chooses the consensus as the box's ground truth on the campaign page
("Choose ground truth…"), the dashboard plots the painted agreement instead of the point plots,
and labels.zip holds exactly the consensus voxels at the box's physical position. No page
throws and no answer is a 5xx, nor a 4xx but the fill-value chunks zarr expects to be absent.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader

from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment, BoxLabelTruth, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "painted-pass-123"
BOX = (32, 32, 32)
VOXEL_NM = 200.0
# zarr asks for chunks a store need not hold (the fill value) and probes for metadata (the
# group root has no .zarray: the label-consensus/ URL is a group, as labels/v<n>/ is).
ABSENT = re.compile(
    r"(/c/[\d/]+|/s0/\d+/\d+/\d+|/\.zmetadata|/zarr\.json|/\.zattrs|/\.zgroup|/\.zarray)$"
)
CONSENSUS_LAYER_JS = """() => {
  const layer = annotome.viewer().state.toJSON().layers.find((l) => l.name === 'consensus');
  return layer ? {type: layer.type, source: layer.source, segments: layer.segments} : null;
}"""


def cube(out: np.ndarray, value: int, at: tuple[int, int, int], size: int) -> np.ndarray:
    out[at[0] : at[0] + size, at[1] : at[1] + size, at[2] : at[2] + size] = value
    return out


def volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a1's, a2's and their consensus at quorum 2."""
    a1, a2, consensus = (np.zeros(BOX, np.uint32) for _ in range(3))
    cube(a1, 1, (4, 4, 4), 10)
    cube(a1, 2, (16, 16, 16), 8)
    cube(a2, 7, (4, 4, 5), 10)
    cube(a2, 9, (20, 2, 20), 4)
    consensus[4:14, 4:14, 5:14] = 1
    return a1, a2, consensus


def make_world() -> tuple[AnnotationCampaign, dict[str, Any], dict[str, Assignment]]:
    users = get_user_model().objects
    people = {
        name: users.create_user(name, password=PASSWORD) for name in ("owner", "a1", "a2", "rv")
    }
    dataset = build_nuclei_dataset(people["owner"], slug="painted", shape=(64, 64, 64), n_nuclei=4)
    layer = dataset.layers.get(name="image")
    spec = services.CampaignSpec(name="Painted nuclei", box_size_um=[6.4, 6.4, 6.4], redundancy=2)
    campaign = services.campaign_create(people["owner"], dataset, layer, spec)
    campaign.painted = True
    campaign.save()
    for name in ("a1", "a2"):
        services.member_add(campaign, people["owner"], name, Role.ANNOTATOR)
    services.member_add(campaign, people["owner"], "rv", Role.REVIEWER)
    services.boxes_import_csv(
        campaign, people["owner"], "bbox_ID,x,y,z,w,h,d\nb1,16,8,0,32,32,32\n"
    )
    rows = {}
    for name, labels in zip(("a1", "a2"), volumes()[:2], strict=False):
        row = services.next_task(campaign, people[name])
        assert row is not None
        services.labels_save(row, people[name], row.version, {(0, 0, 0): labels})
        row.refresh_from_db()
        rows[name] = services.submit(row, people[name], row.version)
    return campaign, people, rows


def login(page: Any, url: str, username: str, next_path: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def review_loads(page: Any, count: int) -> None:
    page.wait_for_function(f"() => annotome.loads() >= {count}", timeout=90_000)
    page.evaluate("() => annotome.settled()")
    errors = page.evaluate("() => annotome.errors")
    assert errors == [], errors


def test_reviewer_sees_painted_agreement_manager_accepts_the_consensus_export_holds_it(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    campaign, people, rows = make_world()
    box = rows["a1"].box
    url = live_server.url
    bad: list[str] = []
    consensus_files: list[tuple[int, str]] = []

    def answer(response: Any) -> None:
        path = response.url.split("?")[0]
        if "/label-consensus/q" in path:
            consensus_files.append((response.status, path))
        absent = response.status == 404 and ABSENT.search(path)
        if response.status >= 400 and not absent:
            bad.append(f"{response.status} {response.request.method} {response.url}")

    browser_context.on("response", answer)
    page = browser_context.new_page()
    page.on("pageerror", lambda e: bad.append(f"page error: {e}"))

    # 1. The reviewer: the painted agreement of the box, the objects left out, the consensus
    # volume as a segmentation layer read by Neuroglancer.
    login(page, url, "rv", f"/annotation/{campaign.pk}/review/")
    review_loads(page, 1)
    assert page.is_visible("#review-painted-section")
    assert not page.is_visible("#review-agreement-section")  # no point agreement
    cells = page.locator("#review-painted tbody tr").first.locator("td").all_inner_texts()
    assert cells == ["a1 / a2", "1 of 2 / 2", "0.5", "0.5", "0.5", "0.699", "0.818"]
    assert "mean Dice 0.699" in page.inner_text("#review-painted-summary")
    assert "quorum 2 of 2" in page.inner_text("#review-consensus")
    left_out = page.locator("#review-unmatched li").all_inner_texts()
    assert left_out == [
        "a1 #2: 512 voxels at 20 20 20 (box z y x), alone",
        "a2 #9: 64 voxels at 22 4 22 (box z y x), alone",
    ]
    layer = page.evaluate(CONSENSUS_LAYER_JS)
    assert layer is not None and layer["type"] == "segmentation" and layer["segments"] == ["1"]
    token = f"q2-{rows['a1'].pk}v{rows['a1'].version}-{rows['a2'].pk}v{rows['a2'].version}"
    assert layer["source"].endswith(f"/label-consensus/{token}/")
    # Neuroglancer reads the consensus volume's array metadata and its chunk.
    files = (
        f"{url}/api/v1/annotation/campaigns/{campaign.pk}/boxes/{box.pk}/label-consensus/{token}"
    )
    for _ in range(240):
        if {(200, f"{files}/s0/.zarray"), (200, f"{files}/s0/0/0/0")} <= set(consensus_files):
            break
        page.wait_for_timeout(250)
    assert (200, f"{files}/s0/.zarray") in consensus_files, consensus_files
    assert (200, f"{files}/s0/0/0/0") in consensus_files, consensus_files
    # At the consensus object's centre (image voxels z 9, y 17, x 25.5) the layer shows it.
    page.evaluate(
        """() => { const state = annotome.viewer().state;
          const json = state.toJSON();
          const at = {z: 9.5, y: 17.5, x: 26};
          json.position = Object.keys(json.dimensions).map((name) => at[name]);
          state.restoreState(json); }"""
    )
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts_dir / "painted-review.png"))
    page.click("#review-approve")
    review_loads(page, 2)
    page.click("#review-approve")
    review_loads(page, 3)
    assert page.is_visible("#review-empty")
    assert set(Assignment.objects.filter(box=box).values_list("state", flat=True)) == {"approved"}

    # 2. The manager chooses the consensus as the box's ground truth on the campaign page.
    login(page, url, "owner", f"/annotation/{campaign.pk}/")
    page.evaluate("() => annotome.ready")
    page.click(f"button.truth-choose[data-box='{box.pk}']")
    chooser = page.locator(f"form.truth-chooser[data-box='{box.pk}']")
    chooser.wait_for()
    assert "a1's volume (2 objects)" in chooser.inner_text()
    chooser.locator("input[value=consensus]").check()
    assert chooser.locator("input.truth-quorum").input_value() == "2"
    chooser.locator("button[type=submit]").click()
    page.wait_for_selector(f"#boxes-status[data-accepted='{box.pk}']")
    cell = f"#boxes-table tr[data-box='{box.pk}'] td.box-truth"
    page.wait_for_selector(f"{cell}:has-text('consensus (quorum 2), 1 objects')")
    truth = BoxLabelTruth.objects.get(box=box)
    assert (truth.source, truth.quorum, truth.accepted_by) == ("consensus", 2, people["owner"])
    page.screenshot(path=str(artifacts_dir / "painted-truth.png"))

    # 3. The dashboard plots the painted agreement, not the (empty) point agreement.
    page.goto(f"{url}/annotation/{campaign.pk}/dashboard/")
    page.wait_for_function("() => annotome.refreshes() >= 1", timeout=30_000)
    assert page.is_visible("figure:has(#plot-label-f1)")
    assert page.is_visible("figure:has(#plot-label-dice)")
    assert not page.is_visible("figure:has(#plot-agreement)")
    assert "mean Dice 0.70" in page.inner_text("#agreement-text")

    # 4. labels.zip holds exactly the consensus voxels at the box's physical position.
    response = page.request.get(f"{url}/api/v1/annotation/campaigns/{campaign.pk}/labels.zip")
    assert response.status == 200
    out = artifacts_dir / "labels"
    with zipfile.ZipFile(io.BytesIO(response.body())) as archive:
        archive.extractall(out)
    consensus = volumes()[2]
    nodes = [
        n
        for n in Reader(parse_url(str(out / "boxes" / f"{box.pk}.ome.zarr")))()
        if n.load(Multiscales)
    ]
    assert len(nodes) == 1 and (np.asarray(nodes[0].data[0]) == consensus).all()
    transforms = {
        t["type"]: t[t["type"]] for t in nodes[0].metadata["coordinateTransformations"][0]
    }
    origin_nm = [o * 1000 for o in campaign.geometry.get("origin_um") or [0.0, 0.0, 0.0]]
    assert transforms["translation"] == [
        o + s * VOXEL_NM for o, s in zip(origin_nm, box.start, strict=True)
    ]
    whole = [n for n in Reader(parse_url(str(out / "labels.ome.zarr")))() if n.load(Multiscales)]
    image = np.asarray(whole[0].data[0])
    region = tuple(slice(s, s + n) for s, n in zip(box.start, box.size, strict=True))
    assert (image[region] == consensus).all() and int(np.count_nonzero(image)) == 900
    sources = list(csv.DictReader(io.StringIO((out / "sources.csv").read_text())))
    assert [(s["box"], s["source"], s["quorum"], s["accepted_by"]) for s in sources] == [
        ("b1", "consensus", "2", "owner")
    ]
    assert bad == [], bad
