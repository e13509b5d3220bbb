"""Annotation API: every endpoint for every role, bad input with clear 4xx answers, stale writes
with 409 and the current version, and the schema's account of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from annotation_testdata import point_op
from rest_framework.test import APIClient

from webapp.annotation import services
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    CampaignMember,
    Role,
    TaskBox,
)

pytestmark = pytest.mark.django_db

API = "/api/v1/annotation/"
ROLES = ("manager", "own", "other", "reviewer", "outsider", "anonymous")
USERS = {"manager": "owner", "own": "a1", "other": "a3", "reviewer": "rv", "outsider": "outsider"}


@dataclass
class World:
    campaign: AnnotationCampaign
    open_task: Assignment  # a1's, in progress at version 1 with one point
    submitted: Assignment  # a1's, submitted at version 1
    free_box: TaskBox  # nobody has saved in it
    reviewer_role: CampaignMember

    def url(self, template: str) -> str:
        return API + template.format(
            c=self.campaign.pk,
            a=self.open_task.pk,
            s=self.submitted.pk,
            box=self.open_task.box_id,
            free=self.free_box.pk,
            m=self.reviewer_role.pk,
        )


def _centre(box: TaskBox) -> list[float]:
    return [float(s + n // 2) for s, n in zip(box.start, box.size, strict=True)]


@pytest.fixture
def world(campaign: AnnotationCampaign, people: dict[str, Any]) -> World:
    a1 = people["a1"]
    first = services.next_task(campaign, a1)
    assert first is not None
    services.save(first, a1, 0, [point_op("p1", *_centre(first.box))])
    services.submit(first, a1, 1)
    second = services.next_task(campaign, a1)
    assert second is not None
    services.save(second, a1, 0, [point_op("p1", *_centre(second.box))])
    busy = {first.box_id, second.box_id}
    free_box = TaskBox.objects.filter(campaign=campaign).exclude(pk__in=busy).last()
    assert free_box is not None
    return World(
        campaign=campaign,
        open_task=Assignment.objects.get(pk=second.pk),
        submitted=Assignment.objects.get(pk=first.pk),
        free_box=free_box,
        reviewer_role=CampaignMember.objects.get(
            campaign=campaign, user=people["rv"], role=Role.REVIEWER
        ),
    )


def _client(people: dict[str, Any], role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(people[USERS[role]])
    return client


# (method, path, body, statuses for manager, own annotator, another annotator, reviewer,
# outsider, anonymous)
CASES: list[tuple[str, str, Any, tuple[int, ...]]] = [
    ("get", "campaigns/", None, (200, 200, 200, 200, 200, 401)),
    ("post", "campaigns/", "create", (201, 403, 403, 403, 403, 401)),
    ("get", "campaigns/{c}/", None, (200, 200, 200, 200, 404, 401)),
    ("patch", "campaigns/{c}/", {"instructions": "New"}, (200, 403, 403, 403, 404, 401)),
    ("delete", "campaigns/{c}/", None, (204, 403, 403, 403, 404, 401)),
    ("get", "campaigns/{c}/members/", None, (200, 200, 200, 200, 404, 401)),
    (
        "post",
        "campaigns/{c}/members/",
        {"username": "outsider", "role": "reviewer"},
        (201, 403, 403, 403, 404, 401),
    ),
    ("delete", "campaigns/{c}/members/{m}/", None, (204, 403, 403, 403, 404, 401)),
    ("get", "campaigns/{c}/boxes/", None, (200, 200, 200, 200, 404, 401)),
    ("post", "campaigns/{c}/boxes/", {"source": "tile"}, (201, 403, 403, 403, 404, 401)),
    ("get", "campaigns/{c}/boxes/{box}/", None, (200, 200, 200, 200, 404, 401)),
    ("delete", "campaigns/{c}/boxes/{free}/", None, (204, 403, 403, 403, 404, 401)),
    ("delete", "campaigns/{c}/boxes/{box}/flag/", None, (200, 403, 403, 403, 404, 401)),
    ("post", "campaigns/{c}/next/", None, (403, 200, 200, 403, 404, 401)),
    ("post", "campaigns/{c}/review/next/", None, (403, 403, 403, 200, 404, 401)),
    ("get", "campaigns/{c}/assignments/", None, (200, 200, 200, 200, 404, 401)),
    ("get", "campaigns/{c}/audit/", None, (200, 403, 403, 403, 404, 401)),
    ("get", "campaigns/{c}/dashboard/", None, (200, 403, 403, 200, 404, 401)),
    ("get", "campaigns/{c}/dashboard.csv", None, (200, 403, 403, 200, 404, 401)),
    ("get", "assignments/{a}/", None, (200, 200, 404, 200, 404, 401)),
    ("get", "assignments/{a}/annotations/", None, (200, 200, 404, 200, 404, 401)),
    (
        "post",
        "assignments/{a}/annotations/",
        "save",
        (403, 200, 404, 403, 404, 401),
    ),
    ("get", "assignments/{a}/revisions/", None, (200, 200, 404, 200, 404, 401)),
    (
        "post",
        "assignments/{a}/restore/",
        {"version": 0, "base_version": 1},
        (403, 200, 404, 403, 404, 401),
    ),
    ("post", "assignments/{a}/activity/", None, (403, 200, 404, 403, 404, 401)),
    # a1's open task holds a point: it cannot be given back
    ("post", "assignments/{a}/skip/", None, (403, 409, 404, 403, 404, 401)),
    ("post", "assignments/{a}/flag/", {"reason": "No tissue"}, (403, 409, 404, 403, 404, 401)),
    ("post", "assignments/{a}/submit/", {"base_version": 1}, (403, 200, 404, 403, 404, 401)),
    ("post", "assignments/{s}/approve/", {}, (403, 403, 404, 200, 404, 401)),
    ("post", "assignments/{s}/reject/", {"comment": "Fix"}, (403, 403, 404, 200, 404, 401)),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "statuses"), CASES, ids=[f"{m} {p}" for m, p, _, _ in CASES]
)
def test_every_endpoint_for_every_role(
    world: World,
    people: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    statuses: tuple[int, ...],
) -> None:
    if body == "create":
        layer = world.campaign.image_layer
        body = {"dataset": layer.dataset.slug, "image_layer": layer.name, "name": "Second"}
    elif body == "save":
        body = {"base_version": 1, "ops": [point_op("p2", *_centre(world.open_task.box))]}
    got = {}
    for role in ROLES:
        # Each role asks against the same starting state: undo what a success changed.
        with _rolled_back():
            response = getattr(_client(people, role), method)(world.url(path), body, format="json")
        got[role] = response.status_code
        if response.status_code >= 400:
            assert response.json()["message"], (role, response.content)
    assert got == dict(zip(ROLES, statuses, strict=True))


class _Rollback(Exception):
    pass


class _rolled_back:
    """Run the block in a transaction that is rolled back at its end."""

    def __enter__(self) -> None:
        from django.db import transaction

        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        from django.db import transaction

        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)
        return False


def test_annotators_list_only_their_own_assignments(world: World, people: dict[str, Any]) -> None:
    mine = _client(people, "own").get(world.url("campaigns/{c}/assignments/")).json()["results"]
    assert {r["annotator"] for r in mine} == {"a1"} and len(mine) == 2
    others = _client(people, "other").get(world.url("campaigns/{c}/assignments/")).json()
    assert others["results"] == []
    everyone = _client(people, "reviewer").get(world.url("campaigns/{c}/assignments/")).json()
    assert everyone["count"] == 16


# --- bad input ----------------------------------------------------------------------------------


def test_boxes_outside_the_volume_or_of_no_size_are_refused(
    world: World, people: dict[str, Any]
) -> None:
    manager = _client(people, "manager")
    url = world.url("campaigns/{c}/boxes/")
    outside = manager.post(
        url,
        {"source": "tile", "region": {"start": [0, 0, 0], "size": [100, 10, 10]}},
        format="json",
    )
    assert outside.status_code == 400
    assert "outside" in outside.json()["message"] or "volume" in outside.json()["message"]
    empty = manager.post(
        url,
        {"source": "tile", "region": {"start": [0, 0, 0], "size": [0, 10, 10]}},
        format="json",
    )
    assert empty.status_code == 400
    zero = manager.post(
        url, {"source": "csv", "csv": "id,x,y,z,w,h,d\nb1,0,0,0,0,10,5\n"}, format="json"
    )
    assert zero.status_code == 400 and "line 2" in zero.json()["message"]
    far = manager.post(
        url, {"source": "csv", "csv": "id,x,y,z,w,h,d\nb1,60,0,0,10,10,5\n"}, format="json"
    )
    assert far.status_code == 400 and "line 2" in far.json()["message"]


def test_a_malformed_csv_names_its_line(world: World, people: dict[str, Any]) -> None:
    table = "id,x,y,z,w,h,d\nb1,0,0,0,10,10,5\nb2,0,zero,0,10,10,5\n"
    response = _client(people, "manager").post(
        world.url("campaigns/{c}/boxes/"), {"source": "csv", "csv": table}, format="json"
    )
    assert response.status_code == 400
    assert "line 3" in response.json()["message"] and "'y'" in response.json()["message"]
    short = _client(people, "manager").post(
        world.url("campaigns/{c}/boxes/"),
        {"source": "csv", "csv": "id,x,y,z,w,h,d\nb1,0,0\n"},
        format="json",
    )
    assert short.status_code == 400 and "line 2" in short.json()["message"]
    assert not TaskBox.objects.filter(campaign=world.campaign, name__in=["b1", "b2"]).exists()


def test_bad_annotations_get_clear_400s(world: World, people: dict[str, Any]) -> None:
    own = _client(people, "own")
    url = world.url("assignments/{a}/annotations/")
    box = world.open_task.box
    outside = own.post(
        url,
        {"base_version": 1, "ops": [point_op("q", box.z0, box.y0, box.x0 + box.width + 3)]},
        format="json",
    )
    assert outside.status_code == 400 and "outside the task box" in outside.json()["message"]
    unknown = own.post(
        url,
        {"base_version": 1, "ops": [point_op("q", *_centre(box), label="mitochondrion")]},
        format="json",
    )
    assert unknown.status_code == 400
    assert "not a class of this campaign" in unknown.json()["message"]
    wrong_kind = own.post(
        url,
        {"base_version": 1, "ops": [{**point_op("q", *_centre(box)), "kind": "sphere"}]},
        format="json",
    )
    assert wrong_kind.status_code == 400
    assert own.post(url, {"base_version": 1, "ops": []}, format="json").status_code == 400
    assert own.get(url + "?version=7").status_code == 400
    assert own.get(url + "?version=x").status_code == 400
    # Nothing was saved by any of these.
    assert own.get(url).json()["current_version"] == 1


def test_an_oversized_save_is_413(world: World, people: dict[str, Any]) -> None:
    box = world.open_task.box
    ops = [point_op(f"p{i}", *_centre(box)) for i in range(services.MAX_OPS_PER_SAVE + 1)]
    response = _client(people, "own").post(
        world.url("assignments/{a}/annotations/"), {"base_version": 1, "ops": ops}, format="json"
    )
    assert response.status_code == 413, response.content[:300]
    assert f"{services.MAX_OPS_PER_SAVE:,}" in response.json()["message"]


def test_a_stale_write_gets_409_with_the_current_version(
    world: World, people: dict[str, Any]
) -> None:
    own = _client(people, "own")
    url = world.url("assignments/{a}/annotations/")
    centre = _centre(world.open_task.box)
    first = own.post(url, {"base_version": 1, "ops": [point_op("t1", *centre)]}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = own.post(url, {"base_version": 1, "ops": [point_op("t2", *centre)]}, format="json")
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2 and "version 2" in stale.json()["message"]
    stale_submit = own.post(
        world.url("assignments/{a}/submit/"), {"base_version": 1}, format="json"
    )
    assert stale_submit.status_code == 409 and stale_submit.json()["current_version"] == 2
    stale_restore = own.post(
        world.url("assignments/{a}/restore/"), {"version": 0, "base_version": 1}, format="json"
    )
    assert stale_restore.status_code == 409 and stale_restore.json()["current_version"] == 2
    # The winning write is there, the refused one is not.
    uids = {a["uid"] for a in own.get(url).json()["annotations"]}
    assert uids == {"p1", "t1"}
    # A submitted task can no longer be edited: 409 with its version.
    closed = own.post(
        world.url("assignments/{s}/annotations/"),
        {"base_version": 1, "ops": [point_op("t3", *_centre(world.submitted.box))]},
        format="json",
    )
    assert closed.status_code == 409 and closed.json()["current_version"] == 1


def test_restore_of_a_future_version_is_400_and_of_a_past_one_a_new_version(
    world: World, people: dict[str, Any]
) -> None:
    own = _client(people, "own")
    restore = world.url("assignments/{a}/restore/")
    future = own.post(restore, {"version": 5, "base_version": 1}, format="json")
    assert future.status_code == 400 and "earlier version" in future.json()["message"]
    same = own.post(restore, {"version": 1, "base_version": 1}, format="json")
    assert same.status_code == 400
    back = own.post(restore, {"version": 0, "base_version": 1}, format="json")
    assert back.status_code == 200 and back.json()["version"] == 2 and back.json()["count"] == 0
    revisions = own.get(world.url("assignments/{a}/revisions/")).json()
    assert [(r["number"], r["kind"], r["restored_from"]) for r in revisions] == [
        (2, "restore", 0),
        (1, "save", None),
    ]
    old = own.get(world.url("assignments/{a}/annotations/") + "?version=1").json()
    assert [a["uid"] for a in old["annotations"]] == ["p1"]


def test_review_flow_through_the_api(world: World, people: dict[str, Any]) -> None:
    reviewer = _client(people, "reviewer")
    taken = reviewer.post(world.url("campaigns/{c}/review/next/"))
    assert taken.status_code == 200 and taken.json()["id"] == world.submitted.pk
    empty_comment = reviewer.post(world.url("assignments/{s}/reject/"), {}, format="json")
    assert empty_comment.status_code == 400
    rejected = reviewer.post(
        world.url("assignments/{s}/reject/"), {"comment": "Missed one"}, format="json"
    )
    assert rejected.json()["state"] == AssignmentState.REJECTED
    again = reviewer.post(world.url("assignments/{s}/approve/"), {}, format="json")
    assert again.status_code == 409
    audit = _client(people, "manager").get(world.url("campaigns/{c}/audit/") + "?action=assignment")
    actions = [e["action"] for e in audit.json()["results"]]
    assert actions[0] == "assignment.reject"
    bad = _client(people, "manager").get(world.url("campaigns/{c}/audit/") + "?action=nope")
    assert bad.status_code == 400


def test_the_schema_documents_the_endpoints_and_the_409_body() -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    paths = schema["paths"]
    from webapp.annotation.api.urls import urlpatterns

    for pattern in urlpatterns:
        route = "/api/v1/" + str(pattern.pattern).replace("<int:", "{").replace(">", "}")
        # A labels version's (and a consensus volume's) OME-Zarr files are data for
        # Neuroglancer, not operations.
        files = getattr(pattern, "name", "") in (
            "api-annotation-labels-zarr",
            "api-annotation-labels-meshes",
            "api-annotation-labels-chunk",
            "api-annotation-labels-fragment",
            "api-annotation-label-consensus-zarr",
        )
        assert (route in paths) != files, route
    components = schema["components"]["schemas"]
    for tail, method in [
        ("annotations/", "post"),
        ("submit/", "post"),
        ("restore/", "post"),
        ("labels/", "post"),
    ]:
        responses = paths[f"/api/v1/annotation/assignments/{{assignment_id}}/{tail}"][method][
            "responses"
        ]
        assert {"400", "401", "403", "404", "409"} <= set(responses), tail
        ref = responses["409"]["content"]["application/json"]["schema"]["$ref"]
        body = components[ref.rsplit("/", 1)[-1]]
        assert "current_version" in body["properties"] and "current_version" in body["required"]
    save = paths["/api/v1/annotation/assignments/{assignment_id}/annotations/"]["post"]
    assert "413" in save["responses"]
    labels = paths["/api/v1/annotation/assignments/{assignment_id}/labels/"]["post"]
    assert {"400", "403", "404", "409", "413"} <= set(labels["responses"])
    assert "multipart/form-data" in labels["requestBody"]["content"]


# --- dashboard ----------------------------------------------------------------------------------


def test_the_dashboard_counts_states_annotators_and_approvals(
    world: World, people: dict[str, Any]
) -> None:
    a2, rv = people["a2"], people["rv"]
    # a2 does the box of a1's submitted task too: N = 2, so the box completes when both are
    # approved.
    other = services.next_task(world.campaign, a2)
    assert other is not None and other.box_id == world.submitted.box_id
    centre = _centre(other.box)
    ops = [point_op(f"q{i}", centre[0], centre[1] + i, centre[2]) for i in range(3)]
    services.save(other, a2, 0, ops)
    services.submit(other, a2, 1)
    services.approve(world.submitted, rv)
    services.reject(other, rv, "Two of these are one nucleus")
    Assignment.objects.filter(pk=world.submitted.pk).update(active_seconds=90.0)

    url = world.url("campaigns/{c}/dashboard/")
    for role, expected in [("manager", 200), ("reviewer", 200), ("own", 403), ("outsider", 404)]:
        assert _client(people, role).get(url).status_code == expected, role
    assert _client(people, "anonymous").get(url).status_code == 401
    data = _client(people, "reviewer").get(url).json()
    assert data["boxes_total"] == 8 and data["boxes_complete"] == 0
    assert data["boxes"] == {
        "todo": 6,
        "in_progress": 2,
        "in_review": 0,
        "complete": 0,
        "flagged": 0,
    }
    assert data["slots"] == {
        "todo": 13,
        "in_progress": 1,
        "submitted": 0,
        "approved": 1,
        "rejected": 1,
    }
    by_name = {r["annotator"]: r for r in data["annotators"]}
    assert set(by_name) == {"a1", "a2", "a3"}
    assert by_name["a1"]["tasks"] == 2 and by_name["a1"]["by_state"]["approved"] == 1
    assert by_name["a1"]["objects"] == 1  # the approved task's point; the open one's not
    assert by_name["a1"]["median_seconds_per_task"] == 90.0
    assert by_name["a1"]["median_seconds_per_object"] == 90.0
    assert by_name["a1"]["rejection_rate"] == 0.0
    assert by_name["a2"]["rejection_rate"] == 1.0 and by_name["a2"]["reviews"] == 1
    assert by_name["a3"]["tasks"] == 0 and by_name["a3"]["rejection_rate"] is None
    assert data["timeline"]["bucket"] == "hour"
    (point,) = data["timeline"]["points"]
    assert (point["approved"], point["submitted"], point["approved_total"]) == (1, 2, 1)
    assert data["agreement"] is None

    # a2 fixes and resubmits, both approved: the box is complete.
    services.submit(other, a2, 1)
    services.approve(Assignment.objects.get(pk=other.pk), rv)
    data = _client(people, "manager").get(url).json()
    assert data["boxes_complete"] == 1 and data["progress"] == 1 / 8
    # a1's one point matches one of a2's three: F1 = 2 * 1 / (1 + 3) = 0.5, in the sixth tenth
    agreement = data["agreement"]
    assert agreement["boxes_compared"] == 1 and agreement["mean_f1"] == 0.5
    assert agreement["f1_bins"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert {a["annotator"]: a["mean_f1"] for a in agreement["annotators"]} == {
        "a1": 0.5,
        "a2": 0.5,
    }

    csv = _client(people, "manager").get(world.url("campaigns/{c}/dashboard.csv"))
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    assert "attachment" in csv["Content-Disposition"]
    lines = csv.content.decode().splitlines()
    assert lines[0] == "section,name,annotator,value"
    assert "progress,boxes_complete,,1" in lines
    assert "annotator,rejection_rate,a2,0.5" in lines
    assert _client(people, "own").get(world.url("campaigns/{c}/dashboard.csv")).status_code == 403


def test_the_dashboard_page_is_for_managers_and_reviewers(
    world: World, people: dict[str, Any]
) -> None:
    from django.test import Client

    url = f"/annotation/{world.campaign.pk}/dashboard/"
    for username, expected in [("owner", 200), ("rv", 200), ("a1", 403), ("outsider", 404)]:
        client = Client()
        client.force_login(people[username])
        response = client.get(url)
        assert response.status_code == expected, username
        if expected == 200:
            page = response.content.decode()
            assert 'id="plot-boxes"' in page and "annotation_dashboard.js" in page
            assert f"/api/v1/annotation/campaigns/{world.campaign.pk}/dashboard.csv" in page
    assert Client().get(url).status_code == 302
