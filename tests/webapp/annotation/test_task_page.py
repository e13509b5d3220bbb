"""The annotator's task page and "next task": who may open it (the annotator edits; the
campaign's reviewers and managers read; anyone else 404; anonymous visitors log in first), the
viewer state (the campaign's image layer only; annotations never in the page) and the
instructions rendered safely."""

from __future__ import annotations

import json
from typing import Any

import pytest
from annotation_testdata import point_op
from django.test import Client

from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment
from webapp.annotation.task_views import instructions_html

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _config(response: Any) -> dict[str, Any]:
    html = response.content.decode()
    start = html.index('id="task-config"')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return dict(json.loads(body))


@pytest.fixture
def taken(campaign: AnnotationCampaign, people: dict[str, Any]) -> Assignment:
    row = services.next_task(campaign, people["a1"])
    assert row is not None
    return row


def test_next_redirects_to_the_task_page_and_the_annotator_may_edit(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    client = _client(people["a1"])
    response = client.get(f"/annotation/{campaign.id}/next/")
    assert response.status_code == 302
    row = Assignment.objects.get(annotator=people["a1"])
    assert response["Location"] == f"/annotation/task/{row.id}/"
    # Asking again gives the same open task, not a second one.
    assert client.get(f"/annotation/{campaign.id}/next/")["Location"] == response["Location"]
    page = client.get(response["Location"])
    assert page.status_code == 200
    config = _config(page)
    assert config["editable"] is True and config["assignmentId"] == row.id
    assert config["box"]["start"] == list(row.box.start)
    state = json.loads(
        page.content.decode()
        .split('id="viewer-state" type="application/json">')[1]
        .split("</script>")[0]
    )
    assert [la["type"] for la in state["layers"]] == ["image"]
    # The annotations come from the API, never inside the page (or its URL).
    assert "annotations" not in config


def test_reviewers_and_managers_read_others_get_404_anonymous_logs_in(
    taken: Assignment, people: dict[str, Any]
) -> None:
    url = f"/annotation/task/{taken.id}/"
    for name in ("rv", "owner"):
        response = _client(people[name]).get(url)
        assert response.status_code == 200, name
        assert _config(response)["editable"] is False
    for name in ("a2", "outsider"):
        assert _client(people[name]).get(url).status_code == 404, name
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert _client(people["a1"]).get("/annotation/task/999999/").status_code == 404


def test_a_submitted_task_is_read_only_for_its_annotator(
    taken: Assignment, people: dict[str, Any]
) -> None:
    result = services.save(taken, people["a1"], 0, [point_op("p", 1, 1, 1)])
    services.submit(taken, people["a1"], result.version)
    response = _client(people["a1"]).get(f"/annotation/task/{taken.id}/")
    assert response.status_code == 200
    assert _config(response)["editable"] is False


def test_nothing_left_and_non_annotators(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    for box in campaign.boxes.all():
        box.flag_reason = "no tissue"
        box.save()
    response = _client(people["a2"]).get(f"/annotation/{campaign.id}/next/")
    assert response.status_code == 200
    assert "Nothing left for you" in response.content.decode()
    campaign.boxes.all().delete()  # a new campaign: says what is missing
    response = _client(people["a2"]).get(f"/annotation/{campaign.id}/next/")
    assert "This campaign has no boxes yet" in response.content.decode()
    refused = _client(people["rv"]).get(f"/annotation/{campaign.id}/next/")
    assert refused.status_code == 403
    assert _client(people["outsider"]).get(f"/annotation/{campaign.id}/next/").status_code == 404


def test_instructions_are_markdown_without_raw_html() -> None:
    html = str(
        instructions_html(
            "Click **nuclei**.\n\n<script>alert(1)</script>\n\n"
            '[x](javascript:alert(1)) <img src=x onerror="alert(1)">'
        )
    )
    assert "<strong>nuclei</strong>" in html
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html


def test_the_task_page_keeps_its_image_and_the_detections_as_context_points() -> None:
    from webapp.annotation.task_views import _image_layers

    state = {
        "layers": [
            {"type": "image", "name": "image"},
            {"type": "image", "name": "other"},
            {"type": "segmentation", "name": "nuclei"},
            {
                "type": "annotation",
                "name": "nuclei detections",
                "source": "precomputed://x",
                "visible": False,
                "linkedSegmentationLayer": {"segment_id": "nuclei"},
            },
        ]
    }
    kept = _image_layers(state, "image")
    assert [la["name"] for la in kept] == ["image", "nuclei detections"]
    assert "linkedSegmentationLayer" not in kept[1] and kept[1]["visible"] is False
