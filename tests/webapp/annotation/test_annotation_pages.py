"""The managers' annotation pages: who may open which (anonymous visitors are sent to log
in, outsiders get 404, members what their roles allow), what they show, the coverage map's
projection and the viewer's "task boxes" layer."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from annotation_testdata import campaign_with, image_layer
from django.test import Client

from webapp.annotation import services
from webapp.annotation.coverage import (
    STATE_COLOURS,
    STATE_LABELS,
    box_state,
    boxes_layer_json,
    drawn_boxes,
    project_box,
    thumbnail_size_for,
)
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.datasets.models import Layer, LayerKind

pytestmark = pytest.mark.django_db


def _pages(campaign: AnnotationCampaign) -> dict[str, str]:
    base = f"/annotation/{campaign.pk}/"
    return {"page": base, "audit": f"{base}audit/", "viewer": f"{base}viewer/"}


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _json_script(html: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert match, element_id
    return json.loads(match.group(1))


def test_anonymous_visitors_are_sent_to_log_in(campaign: AnnotationCampaign) -> None:
    for url in ["/annotation/", *_pages(campaign).values()]:
        answer = Client().get(url)
        assert answer.status_code == 302, url
        assert answer["Location"].startswith("/accounts/login/?next="), url


def test_outsiders_get_404_and_see_no_campaign(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    client = _as(people["outsider"])
    for url in _pages(campaign).values():
        assert client.get(url).status_code == 404, url
    listing = client.get("/annotation/")
    assert listing.status_code == 200
    assert "Nuclei" not in listing.content.decode()
    assert "not a member of any annotation campaign" in listing.content.decode()


def test_each_role_sees_its_links(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    pages = _pages(campaign)
    # Manager: everything, the forms that add boxes and members.
    manager = _as(people["owner"])
    # Settings in six significant digits (0.1 um is 0.09999999999999999 after nm / 1000).
    geometry = {**campaign.geometry, "voxel_size_um": [0.1 * 3, 0.2, 0.2]}
    AnnotationCampaign.objects.filter(pk=campaign.pk).update(geometry=geometry)
    page = manager.get(pages["page"]).content.decode()
    assert "voxel 0.3 \u00d7 0.2 \u00d7 0.2 \u00b5m" in page
    for needle in (
        'id="add-tile"',
        'id="add-sample"',
        'id="add-csv"',
        'id="member-form"',
        pages["audit"],
        pages["viewer"],
        f"/annotation/{campaign.pk}/dashboard/",
    ):
        assert needle in page, needle
    assert "member-remove" in page
    # The ground truth's downloads; the boxes table offers the consensus (quorum of N = 2).
    assert f"/api/v1/annotation/campaigns/{campaign.pk}/export.csv" in page
    assert _json_script(page, "annotation-config")["quorum"] == 2
    assert manager.get(pages["audit"]).status_code == 200
    assert manager.get(pages["viewer"]).status_code == 200
    # Annotator: the next task, no forms, no audit log.
    annotator = _as(people["a1"])
    page = annotator.get(pages["page"]).content.decode()
    assert f"/annotation/{campaign.pk}/next/" in page
    for needle in (
        'id="add-tile"',
        'id="member-form"',
        pages["audit"],
        "member-remove",
        'id="campaign-exports"',
    ):
        assert needle not in page, needle
    assert annotator.get(pages["audit"]).status_code == 403
    assert annotator.get(pages["viewer"]).status_code == 200
    # Reviewer: the review queue and the dashboard, no audit log.
    reviewer = _as(people["rv"])
    page = reviewer.get(pages["page"]).content.decode()
    assert f"/annotation/{campaign.pk}/review/" in page
    assert f"/annotation/{campaign.pk}/dashboard/" in page
    assert f"/api/v1/annotation/campaigns/{campaign.pk}/export.csv" in page
    assert 'id="add-tile"' not in page
    assert reviewer.get(pages["audit"]).status_code == 403


def test_the_list_shows_roles_counts_and_the_creation_form(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    box = TaskBox.objects.filter(campaign=campaign).order_by("id").first()
    assert box is not None
    services.next_task(campaign, people["a1"])
    html = _as(people["owner"]).get("/annotation/").content.decode()
    assert "Nuclei" in html and "0 / 8" in html
    assert "To do 7" in html and "In progress 1" in html
    config = _json_script(html, "annotation-config")
    assert config["datasets"] == [
        {
            "slug": campaign.dataset.slug,
            "name": campaign.dataset.name,
            "image_layers": [campaign.image_layer.name],
            # 8 x 12.8 x 12.8 um: z (20 slices) whole, y and x a quarter rounded down to 2 um.
            "box_sizes_um": {campaign.image_layer.name: [8.0, 2.0, 2.0]},
        }
    ]
    assert config["defaultSchema"][0]["name"] == "nucleus"
    assert config["defaultBoxSizeUm"] == [50.0, 50.0, 50.0]
    # A run's probability map (an image layer derived from a segmentation) is not offered.
    image = campaign.image_layer
    seg = Layer.objects.create(
        dataset=image.dataset, name="model-v1", kind=LayerKind.SEGMENTATION, path="seg"
    )
    Layer.objects.create(
        dataset=image.dataset, name="model-v1-probability", kind=LayerKind.IMAGE, path="p",
        source_layer=seg, shape=list(image.shape), voxel_size=list(image.voxel_size),
    )  # fmt: skip
    page = _as(people["owner"]).get("/annotation/").content.decode()
    offered = _json_script(page, "annotation-config")["datasets"][0]["image_layers"]
    assert offered == [image.name]
    # A layer row without a usable geometry: the campaign default, not an error page.
    Layer.objects.filter(pk=campaign.image_layer.pk).update(shape=[])
    page = _as(people["owner"]).get("/annotation/").content.decode()
    sizes = _json_script(page, "annotation-config")["datasets"][0]["box_sizes_um"]
    assert sizes == {campaign.image_layer.name: [50.0] * 3}
    Layer.objects.filter(pk=campaign.image_layer.pk).update(shape=list(campaign.image_layer.shape))
    annotator = _as(people["a1"]).get("/annotation/").content.decode()
    assert f"/annotation/{campaign.pk}/next/" in annotator
    assert 'id="annotation-form"' not in annotator  # a1 owns no dataset
    other = _as(people["owner"]).get("/annotation/?dataset=no-such").content.decode()
    assert "Nuclei" not in other


def test_the_dataset_viewer_and_the_navigation_link_to_the_campaigns(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    client = _as(people["owner"])
    html = client.get(f"/datasets/{campaign.dataset.slug}/").content.decode()
    assert f'href="/annotation/?dataset={campaign.dataset.slug}"' in html
    assert 'href="/annotation/">Annotation</a>' in html


def box_state_of(campaign: AnnotationCampaign, box_id: int) -> str:
    return next(b.state for b in drawn_boxes(campaign)[0] if b.id == box_id)


def test_the_viewer_page_holds_the_boxes_as_an_annotation_layer(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    services.next_task(campaign, people["a1"])  # one box begun: in progress
    html = _as(people["a2"]).get(_pages(campaign)["viewer"]).content.decode()
    state = _json_script(html, "viewer-state")
    layer = next(la for la in state["layers"] if la["name"] == "task boxes")
    assert layer["type"] == "annotation" and layer["source"] == "local://annotations"
    assert len(layer["annotations"]) == 8
    assert list(state["dimensions"]) == ["x", "y", "z"]
    box = TaskBox.objects.filter(campaign=campaign).order_by("id").last()
    assert box is not None
    mine = next(a for a in layer["annotations"] if a["id"] == f"box-{box.pk}")
    # On the voxels' outer faces: Neuroglancer's voxel i spans [i - 0.5, i + 0.5).
    assert mine["pointA"] == [box.x0 - 0.5, box.y0 - 0.5, box.z0 - 0.5]
    assert mine["pointB"] == [
        box.x0 + box.width - 0.5,
        box.y0 + box.height - 0.5,
        box.z0 + box.depth - 0.5,
    ]
    # In its state's colour (the coverage map's), through a colour property and a shader.
    assert mine["props"] == [STATE_COLOURS[box_state_of(campaign, box.pk)]]
    assert layer["annotationProperties"][0]["id"] == "color" and "prop_color()" in layer["shader"]
    assert "8 boxes" in html and "task boxes" in html
    # Begun boxes after the boxes to do (drawn over them where tiled edges meet); the image
    # without its yellow volume outline over the boxes' edges.
    states = [box_state_of(campaign, int(a["id"][4:])) for a in layer["annotations"]]
    assert states == sorted(states, key=lambda s: s != "todo") and "todo" in states
    assert len(set(states)) > 1, states
    image = next(la for la in state["layers"] if la["type"] == "image")
    assert all(s["subsources"]["bounds"] is False for s in image["source"]), image
    # The note names the colours.
    note = html[html.index('id="task-boxes-note"') :].split("</p>", 1)[0]
    for state, colour in STATE_COLOURS.items():
        assert f"background: {colour}" in note and STATE_LABELS[state] in note, state


def test_the_review_page_opens_without_outlines_or_the_layer_panel(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    """The reviewer's viewer: the image without its volume outline over the reviewed box's
    edges (the closed layer panel and the hidden segmentations: test_review_morphometrics)."""
    html = _as(people["rv"]).get(f"/annotation/{campaign.pk}/review/").content.decode()
    state = _json_script(html, "viewer-state")
    image = next(la for la in state["layers"] if la["type"] == "image")
    assert all(s["subsources"]["bounds"] is False for s in image["source"]), image


def test_the_audit_page_lists_the_filters(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    html = _as(people["owner"]).get(_pages(campaign)["audit"]).content.decode()
    assert '<option value="boxes">' in html and '<option value="a1">' in html
    config = _json_script(html, "audit-config")
    assert config["auditUrl"] == f"/api/v1/annotation/campaigns/{campaign.pk}/audit/"


# --- the coverage map's projection, box states, the viewer layer (no database) ---------------


def test_boxes_project_along_z_onto_the_thumbnail() -> None:
    shape = (100, 200, 400)  # z y x: the thumbnail is twice as wide as high
    thumbnail = thumbnail_size_for(shape)
    assert thumbnail == (256, 128)
    # The projection drops z: a box anywhere in depth lands on the same rectangle.
    assert project_box((0, 50, 100), (10, 100, 200), shape, thumbnail) == (64.0, 32.0, 128.0, 64.0)
    assert project_box((90, 50, 100), (10, 100, 200), shape, thumbnail) == (64.0, 32.0, 128.0, 64.0)
    # The whole volume is the whole picture; a box past the edge is clipped to it.
    assert project_box((0, 0, 0), shape, shape, (300, 150)) == (0.0, 0.0, 300.0, 150.0)
    assert project_box((0, 150, 350), (1, 100, 100), shape, thumbnail) == (224.0, 96.0, 32.0, 32.0)
    # Rounding to thousandths of a pixel, as drawn.
    assert project_box((0, 0, 1), (1, 1, 1), (1, 3, 3), (256, 256)) == (85.333, 0.0, 85.333, 85.333)


@pytest.mark.parametrize(
    ("slots", "flagged", "state"),
    [
        ((0, 0, 0), False, "todo"),
        ((1, 0, 0), False, "in_progress"),
        ((2, 1, 0), False, "in_progress"),
        ((2, 1, 1), False, "submitted"),
        ((2, 0, 2), False, "approved"),
        ((2, 0, 2), True, "flagged"),
    ],
)
def test_a_box_state_is_that_of_its_slots(
    slots: tuple[int, int, int], flagged: bool, state: str
) -> None:
    assert box_state(2, *slots, flagged) == state


def test_the_layer_of_a_two_dimensional_dataset_has_two_coordinates(
    campaign: AnnotationCampaign,
) -> None:
    layer, total = boxes_layer_json(campaign, ["x", "y"])
    assert total == 8
    assert all(len(a["pointA"]) == 2 and len(a["pointB"]) == 2 for a in layer["annotations"])


def test_a_campaign_without_boxes(people: dict[str, Any]) -> None:
    campaign = campaign_with(image_layer(people["owner"]), people["owner"])
    html = _as(people["owner"]).get(f"/annotation/{campaign.pk}/").content.decode()
    assert "Coverage" in html
    assert "no boxes yet" in _as(people["owner"]).get("/annotation/").content.decode()


def test_the_campaign_page_renders_the_instructions_as_safe_markdown(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    services.campaign_update(
        campaign, people["owner"], {"instructions": "Click **every** nucleus.<script>x()</script>"}
    )
    page = _as(people["a1"]).get(f"/annotation/{campaign.pk}/").content.decode()
    assert "<strong>every</strong>" in page
    assert "<script>x()" not in page and "**every**" not in page


def test_a_site_administrator_is_told_why_they_hold_every_role(
    campaign: AnnotationCampaign, people: dict[str, Any], django_user_model: Any
) -> None:
    admin = django_user_model.objects.create_superuser("root", password="x")
    for url in (f"/annotation/{campaign.pk}/", "/annotation/"):
        page = _as(admin).get(url).content.decode()
        assert "site administrator)" in page, url
        member = _as(people["owner"]).get(url).content.decode()
        assert "site administrator" not in member, url
