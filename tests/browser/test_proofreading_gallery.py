"""A reviewer decides three detections at once in the gallery (click, Shift+click, a verdict
key); the verdicts reach the API, the cards are the server's, a missed-object point dropped on a
card (Alt+click, M) lands on the voxel clicked, and a card opens in the queue."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from scipy import ndimage
from test_proofreading_queue import PASSWORD, login

from pipeline.gallery import CardGeometry, card_pixel_to_voxel, open_pyramid
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections import tasks
from webapp.detections.cards import cards_build_run
from webapp.detections.models import CardBuild
from webapp.detections.services import detections_build_now
from webapp.proofreading import services
from webapp.proofreading.models import Claim, Verdict
from webapp.proofreading.services import CampaignSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 60_000
SHOTS = Path("/tmp/gallery-shots")


def first_page(page: Any) -> float:
    """Milliseconds from the navigation to the first page's cards all loaded."""
    page.evaluate("() => annotome.ready")
    page.wait_for_function("() => annotome.firstPageMs() !== null", timeout=READY_MS)
    return float(page.evaluate("() => annotome.firstPageMs()"))


def neighbour_pixel(
    geometry: CardGeometry, labels: npt.NDArray[Any], segment_id: int
) -> tuple[float, float, int] | None:
    """The centre of the xy-tile pixel deepest inside another object than the card's (px, py,
    that object's id), or None when the tile shows no other object."""
    shown = np.zeros((geometry.tile, geometry.tile), dtype=np.int64)
    for r in range(geometry.tile):
        for c in range(geometry.tile):
            voxel = card_pixel_to_voxel(geometry, c + 0.5, r + 0.5)
            if voxel is not None:
                shown[r, c] = labels[tuple(int(np.floor(v + 0.5)) for v in voxel)]
    others = (shown != 0) & (shown != segment_id)
    if not others.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(others, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return c + 0.5, r + 0.5, int(shown[r, c])


def missed_points(page: Any, base: str, campaign_id: int) -> list[dict[str, Any]]:
    answer = page.request.get(f"{base}/api/v1/proofreading/campaigns/{campaign_id}/missed/")
    assert answer.status == 200
    return list(answer.json()["results"])


def test_reviewer_gives_three_cards_one_verdict_with_click_shift_click_and_a_key(
    live_server: Any,
    browser_context: Any,
    artifacts_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Any] = []
    # No worker runs here: the page must not wait for the card job (cards come on demand).
    monkeypatch.setattr(tasks.cards_build_task, "apply_async", lambda **kw: sent.append(kw))
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    users.create_user("rev", password=PASSWORD)
    users.create_user("rev2", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    detections_build_now(layer)
    campaign = services.campaign_create(
        owner,
        layer,
        CampaignSettings(name="Gallery test", seed=5, reviewers_per_item=2),
        members=[("rev", "reviewer")],
    )
    assert campaign.n_items >= 10

    page = browser_context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    login(page, live_server.url, "rev", "/proofreading/")
    gallery = f"{live_server.url}/proofreading/{campaign.id}/gallery/"
    page.click(f"a[href='/proofreading/{campaign.id}/gallery/']")  # linked from the list
    page.wait_for_url(gallery)
    first_page_ms = first_page(page)
    items = page.evaluate("() => annotome.items()")
    print(
        f"\ngallery: first page of {len(items)} cards drawn {first_page_ms:.0f} ms after "
        "navigation, cards rendered on demand (no card job run)"
    )
    assert len(items) == min(24, campaign.n_items)
    # Every card is the server's 194 px PNG, none broken.
    widths = page.eval_on_selector_all(
        "#gallery-grid img", "(imgs) => imgs.map((i) => i.naturalWidth)"
    )
    assert widths == [194] * len(items)
    # The page claimed its items through next/ (the reviewer holds them).
    held = set(Claim.objects.filter(reviewer__username="rev").values_list("item_id", flat=True))
    assert held == {item["id"] for item in items}
    # The layer's card job was queued (for the table build; the gallery found it queued).
    assert CardBuild.objects.filter(layer=layer).count() == 1 and sent

    cards = page.locator("#gallery-grid .gallery-card")
    cards.nth(0).click()
    cards.nth(2).click(modifiers=["Shift"])
    chosen = [item["id"] for item in items[:3]]
    assert page.evaluate("() => annotome.selected()") == chosen
    assert page.locator(".gallery-card.selected").count() == 3
    page.keyboard.press("3")  # false positive, for all three
    page.evaluate("() => annotome.settled()")
    assert page.is_hidden("#gallery-error"), page.inner_text("#gallery-error")
    assert page.evaluate("() => annotome.decided()") == {str(i): "fp" for i in chosen}
    assert page.locator(".gallery-card.decided").count() == 3
    assert "3 cards" in page.inner_text("#gallery-status")
    badge = cards.nth(1).locator(".card-verdict")
    assert badge.is_visible() and badge.inner_text() == "False positive"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts_dir / "gallery.png"), full_page=True)
    shutil.copy(artifacts_dir / "gallery.png", SHOTS / "gallery.png")

    # The verdicts, through the API (the reviewer's own).
    answer = page.request.get(
        f"{live_server.url}/api/v1/proofreading/campaigns/{campaign.id}/verdicts/"
    )
    assert answer.status == 200
    given = {(v["item"], v["verdict"], v["round"]) for v in answer.json()["results"]}
    assert given == {(i, "fp", 1) for i in chosen}
    assert Verdict.objects.filter(reviewer__username="rev", undone_at__isnull=True).count() == 3

    # A selects the rest of the page; a decided card cannot be selected again.
    page.keyboard.press("a")
    rest = [item["id"] for item in items[3:]]
    assert page.evaluate("() => annotome.selected()") == rest
    page.keyboard.press("Escape")
    cards.nth(0).click()
    assert page.evaluate("() => annotome.selected()") == []

    # A missed-object point: Alt+click on another object seen in a card's xy slice lands in it.
    labels = np.asarray(open_pyramid(dataset.root / layer.path).levels[0].array)
    target_card = None
    for index, item in enumerate(items[3:], start=3):
        raw = page.evaluate("(s) => annotome.geometry(s)", item["segment_id"])
        assert raw is not None, f"card of segment {item['segment_id']} came without geometry"
        geometry = CardGeometry.from_json(raw)
        found = neighbour_pixel(geometry, labels, item["segment_id"])
        if found is not None:
            target_card = (index, geometry, found)
            break
    assert target_card is not None, "no card's xy slice shows a neighbouring object"
    index, geometry, (px, py, neighbour) = target_card
    img = cards.nth(index).locator("img")
    box = img.bounding_box()
    assert box is not None
    scale = box["width"] / geometry.size  # the page may draw the card at another size

    def on_card(x: float, y: float) -> dict[str, float]:
        return {"x": x * scale, "y": y * scale}

    img.click(position=on_card(px, py), modifiers=["Alt"])
    page.evaluate("() => annotome.settled()")
    assert page.is_hidden("#gallery-error"), page.inner_text("#gallery-error")
    stored = missed_points(page, live_server.url, campaign.id)
    assert len(stored) == 1 and stored[0]["created_by"] == "rev"
    expected = card_pixel_to_voxel(geometry, px, py)
    assert expected is not None
    where = (stored[0]["z"], stored[0]["y"], stored[0]["x"])
    assert np.all(np.abs(np.subtract(where, expected)) <= 1.0), (where, expected)
    assert labels[tuple(int(np.floor(v + 0.5)) for v in where)] == neighbour
    print(f"gallery: missed point on card {index} at voxel {where}, inside object {neighbour}")
    assert "missed objects: 1" in page.inner_text("#gallery-counters")
    assert page.inner_text("#gallery-missed-count") == "1"
    assert cards.nth(index).locator(".missed-marker").count() >= 1
    assert page.evaluate("() => annotome.selected()") == []  # Alt+click selects nothing
    page.screenshot(path=str(artifacts_dir / "gallery-missed.png"), full_page=True)
    shutil.copy(artifacts_dir / "gallery-missed.png", SHOTS / "gallery-missed.png")
    # The 3D tile takes no point; M while pointing at the zy tile does.
    step = geometry.tile + geometry.gap
    img.click(position=on_card(step + 48, step + 48), modifiers=["Alt"])
    page.evaluate("() => annotome.settled()")
    assert len(missed_points(page, live_server.url, campaign.id)) == 1
    assert "slice tile" in page.inner_text("#gallery-status")
    img.hover(position=on_card(step + 48, 48))
    page.keyboard.press("m")
    page.evaluate("() => annotome.settled()")
    stored = missed_points(page, live_server.url, campaign.id)
    assert len(stored) == 2 and "missed objects: 2" in page.inner_text("#gallery-counters")
    zy = card_pixel_to_voxel(geometry, step + 48, 48)
    assert zy is not None
    assert np.allclose((stored[1]["z"], stored[1]["y"], stored[1]["x"]), zy, atol=1.0)
    # Removed from the list.
    page.click(f"#gallery-missed-list button[data-missed='{stored[1]['id']}']")
    page.evaluate("() => annotome.settled()")
    assert [p["id"] for p in missed_points(page, live_server.url, campaign.id)] == [stored[0]["id"]]
    assert "missed objects: 1" in page.inner_text("#gallery-counters")

    # "open" shows that card first in the queue view.
    target = items[4]
    cards.nth(4).locator("a", has_text="open").click()
    page.wait_for_url(f"**/proofreading/{campaign.id}/?item={target['id']}")
    page.wait_for_function(
        "(id) => annotome.current() && annotome.current().id === id",
        arg=target["id"],
        timeout=READY_MS,
    )
    assert page.is_hidden("#queue-error"), page.inner_text("#queue-error")

    # Once the card job has run (as it does after a table build under `make up`), a first page
    # is files only: another reviewer opens the gallery.
    build = cards_build_run(CardBuild.objects.get(layer=layer).id)
    assert build.status == "succeeded" and build.n_cards == campaign.n_items
    services.member_add(campaign, owner, "rev2", "reviewer")
    page.click("form[action='/accounts/logout/'] button")
    page.wait_for_load_state()
    login(page, live_server.url, "rev2", "/proofreading/")
    page.goto(gallery)
    job_ms = first_page(page)
    print(f"gallery: first page drawn {job_ms:.0f} ms after navigation, cards from the job")
    # The job's cards bring their geometry too (read from the card set's sidecars).
    segments = [item["segment_id"] for item in page.evaluate("() => annotome.items()")]
    assert all(page.evaluate("(s) => annotome.geometry(s) !== null", s) for s in segments)
    assert len(page.evaluate("() => annotome.items()")) == campaign.n_items  # N = 2
    page.goto(gallery)
    again_ms = first_page(page)
    print(f"gallery: reopened, first page drawn {again_ms:.0f} ms after navigation")
    assert failed == []
