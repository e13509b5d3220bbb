"""Annotation services: campaigns, boxes, hand-out, versioned saves, 409s, restore, review,
time on task and the audit log (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from annotation_testdata import campaign_with, image_layer, point_op
from django.utils import timezone

from pipeline.errors import InvalidInputError
from webapp.annotation import selectors, services
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    AuditEntry,
    Revision,
    TaskBox,
)
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed, NotFound, TooLarge

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[2] / "data" / "segvoldata_c432"


def _take(campaign: AnnotationCampaign, user: Any) -> Assignment:
    row = services.next_task(campaign, user)
    assert row is not None
    return row


# --- campaigns and boxes ------------------------------------------------------------------------


def test_a_campaign_records_its_geometry_and_its_manager(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    assert campaign.geometry["shape"] == [20.0, 64.0, 64.0]
    assert campaign.geometry["voxel_size_um"] == pytest.approx([0.4, 0.2, 0.2])
    assert selectors.roles_of(campaign, people["owner"]) == ["manager"]
    assert services.box_voxels_of(campaign) == (10, 32, 32)
    assert TaskBox.objects.filter(campaign=campaign).count() == 8
    assert Assignment.objects.filter(box__campaign=campaign).count() == 16


def test_only_the_dataset_owner_starts_a_campaign(people: dict[str, Any]) -> None:
    layer = image_layer(people["owner"], visibility="private")
    with pytest.raises(NotFound):
        campaign_with(layer, people["outsider"])


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "1-50 classes"),
        ([{"name": "Nucleus", "colour": "#ffffff", "key": "1"}], "name must be"),
        ([{"name": "n", "colour": "red", "key": "1"}], "colour must be"),
        ([{"name": "n", "colour": "#ffffff", "key": "s"}], "taken by the task page"),
        (
            [
                {"name": "a", "colour": "#ffffff", "key": "1"},
                {"name": "b", "colour": "#ffffff", "key": "1"},
            ],
            "same key",
        ),
    ],
)
def test_bad_label_schemas_are_refused(
    people: dict[str, Any], schema: list[dict[str, str]], message: str
) -> None:
    layer = image_layer(people["owner"])
    with pytest.raises(InvalidRequest, match=message):
        campaign_with(layer, people["owner"], label_schema=schema)


def test_boxes_from_the_published_table(people: dict[str, Any]) -> None:
    layer = image_layer(people["owner"], shape=(5000, 9000, 7000))
    campaign = campaign_with(layer, people["owner"])
    text = (DATA / "C432_XNH_bbox_test.csv").read_text(encoding="utf-8")
    boxes = services.boxes_import_csv(campaign, people["owner"], text)
    assert len(boxes) == 18
    first = TaskBox.objects.get(campaign=campaign, name="GL_ctr")
    assert (first.start, first.size) == ((1000, 4638, 6075), (500, 500, 500))
    with pytest.raises(Conflict, match="already has"):
        services.boxes_import_csv(campaign, people["owner"], text)
    with pytest.raises(InvalidInputError, match="line 2"):
        services.boxes_import_csv(campaign, people["owner"], "id,x,y,z,w,h,d\nq,1,1,1,0,1,1\n")


def test_a_second_tiling_gets_new_names(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    again = services.boxes_tile(campaign, people["owner"])
    assert len(again) == 8 and all(b.name.startswith("tile2-") for b in again)


def test_only_managers_add_boxes(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    with pytest.raises(NotAllowed):
        services.boxes_tile(campaign, people["a1"])
    with pytest.raises(NotFound):
        services.boxes_tile(campaign, people["outsider"])


def test_boxes_around_missed_objects_of_a_proofreading_campaign(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    boxes = services.boxes_from_points(
        campaign, people["owner"], [("m1", (5.0, 40.0, 60.0))], "proofreading campaign 1"
    )
    assert boxes[0].size == (10, 32, 32)
    assert boxes[0].start == (0, 24, 32)  # centred on y, shifted inside on x


# --- hand-out -----------------------------------------------------------------------------------


def test_next_task_resumes_then_gives_new_boxes_never_twice(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    first = _take(campaign, people["a1"])
    assert first.state == AssignmentState.IN_PROGRESS and first.annotator == people["a1"]
    assert _take(campaign, people["a1"]).pk == first.pk  # unfinished: the same one
    services.submit(first, people["a1"], 0)
    second = _take(campaign, people["a1"])
    assert second.box_id != first.box_id
    other = _take(campaign, people["a2"])
    assert other.box_id == first.box_id and other.slot != first.slot  # N = 2: the second slot


def test_annotators_only(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    with pytest.raises(NotAllowed, match="annotators"):
        services.next_task(campaign, people["rv"])
    with pytest.raises(NotFound):
        services.next_task(campaign, people["outsider"])


def test_skip_and_flag(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    first = _take(campaign, people["a1"])
    services.skip(first, people["a1"])
    second = _take(campaign, people["a1"])
    assert second.box_id != first.box_id
    # a box holding annotations cannot be given back
    services.save(second, people["a1"], 0, [point_op("p", *_inside(second))])
    with pytest.raises(Conflict, match="holds your annotations"):
        services.skip(second, people["a1"])
    services.save(second, people["a1"], 1, [{"op": "delete", "uid": "p"}])
    with pytest.raises(InvalidRequest, match="reason"):
        services.flag(second, people["a1"], " ")
    services.flag(second, people["a1"], "no tissue")
    box = TaskBox.objects.get(pk=second.box_id)
    assert box.flag_reason == "no tissue"
    # a flagged box is handed out to nobody until a manager clears the flag
    taken = {_take(campaign, people["a2"]).box_id}
    for _ in range(20):
        row = services.next_task(campaign, people["a2"])
        if row is None:
            break
        services.submit(row, people["a2"], 0)
        taken.add(row.box_id)
    assert box.pk not in taken
    services.box_unflag(box, people["owner"])
    row = services.next_task(campaign, people["a3"])
    assert row is not None


def test_a_skipped_box_comes_back_last(people: dict[str, Any]) -> None:
    layer = image_layer(people["owner"], shape=(10, 32, 64))  # two boxes
    campaign = campaign_with(layer, people["owner"], annotators=(people["a1"],))
    services.boxes_tile(campaign, people["owner"])
    first = _take(campaign, people["a1"])
    services.skip(first, people["a1"])
    second = _take(campaign, people["a1"])
    services.submit(second, people["a1"], 0)
    third = _take(campaign, people["a1"])
    assert third.box_id == first.box_id  # nothing else is left


# --- saves, versions, conflicts -----------------------------------------------------------------


def _inside(row: Assignment) -> tuple[float, float, float]:
    z, y, x = row.box.start
    return (z + 2.0, y + 3.0, x + 4.0)


def test_saves_are_versions_and_nothing_is_lost(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    r1 = services.save(row, people["a1"], 0, [point_op("a", z, y, x), point_op("b", z, y + 1, x)])
    assert (r1.version, r1.created, r1.count) == (1, 2, 2)
    r2 = services.save(
        row, people["a1"], 1, [point_op("a", z, y, x + 1), {"op": "delete", "uid": "b"}]
    )
    assert (r2.version, r2.changed, r2.deleted, r2.count) == (2, 1, 1, 1)
    same = services.save(row, people["a1"], 2, [point_op("a", z, y, x + 1)])
    assert same.version == 2  # nothing changed: no new version
    at1 = {a.uid: a.coords for a in services.annotations_at(row.pk, 1)}
    assert at1 == {"a": [[z, y, x]], "b": [[z, y + 1, x]]}
    now = {a.uid: a.coords for a in services.annotations_at(row.pk, None)}
    assert now == {"a": [[z, y, x + 1]]}
    # restore version 1 as version 3
    r3 = services.restore(row, people["a1"], 1, 2)
    assert r3.version == 3 and r3.count == 2
    assert {a.uid: a.coords for a in services.annotations_at(row.pk, None)} == at1
    assert list(Revision.objects.filter(assignment=row).values_list("number", "kind")) == [
        (1, "save"),
        (2, "save"),
        (3, "restore"),
    ]


def test_a_stale_save_gets_409_with_the_current_version(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    services.save(row, people["a1"], 0, [point_op("a", z, y, x)])
    with pytest.raises(Conflict) as caught:
        services.save(row, people["a1"], 0, [point_op("b", z, y, x)])
    assert caught.value.extra == {"current_version": 1}
    assert [a.uid for a in services.annotations_at(row.pk, None)] == ["a"]


@pytest.mark.parametrize(
    ("op", "error", "message"),
    [
        (point_op("a", 100, 0, 0), InvalidRequest, "outside the task box"),
        (point_op("a", 1, 1, 1, label="cell"), InvalidRequest, "not a class"),
        ({"op": "upsert", "uid": "a", "kind": "cube"}, InvalidRequest, "kind must be"),
        ({**point_op("a", 1, 1, 1), "coords": [[1, 1]]}, InvalidRequest, "three finite"),
        ({**point_op("a", 1, 1, 1), "kind": "line"}, InvalidRequest, "needs 2"),
        ({"op": "move", "uid": "a"}, InvalidRequest, "op must be"),
    ],
)
def test_bad_annotations_are_refused(
    campaign: AnnotationCampaign, people: dict[str, Any], op: Any, error: type, message: str
) -> None:
    row = _take(campaign, people["a1"])
    with pytest.raises(error, match=message):
        services.save(row, people["a1"], 0, [op])
    assert row.revisions.count() == 0


def test_every_kind_of_annotation(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    ops = [
        point_op("p", z, y, x),
        {**point_op("l", z, y, x), "kind": "line", "coords": [[z, y, x], [z, y + 2, x + 2]]},
        {
            **point_op("b", z, y, x),
            "kind": "axis_aligned_bounding_box",
            "coords": [[z, y, x], [z + 1, y + 5, x + 5]],
        },
        {**point_op("e", z, y, x), "kind": "ellipsoid", "coords": [[z, y, x], [2, 3, 3]]},
        {
            **point_op("pl", z, y, x),
            "kind": "polyline",
            "coords": [[z, y, x], [z, y + 1, x], [z, y + 1, x + 1]],
            "object_id": 7,
        },
    ]
    assert services.save(row, people["a1"], 0, ops).count == 5


def test_only_the_annotator_saves_and_too_many_is_413(
    campaign: AnnotationCampaign, people: dict[str, Any], settings: Any
) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    with pytest.raises(NotAllowed):
        services.save(row, people["a2"], 0, [point_op("a", z, y, x)])
    ops = [point_op(f"p{i}", z, y, x) for i in range(services.MAX_OPS_PER_SAVE + 1)]
    with pytest.raises(TooLarge):
        services.save(row, people["a1"], 0, ops)


def test_two_thousand_points_save_a_few_rows_at_a_time(
    campaign: AnnotationCampaign, people: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    row = _take(campaign, people["a1"])
    z0, y0, x0 = row.box.start
    ops = [point_op(f"p{i}", z0 + i % 10, y0 + (i // 10) % 32, x0 + i // 320) for i in range(2000)]
    services.save(row, people["a1"], 0, ops)
    with django_assert_max_num_queries(16):
        result = services.save(row, people["a1"], 1, [point_op("p5", z0, y0, x0)])
    assert result.count == 2000 and result.changed == 1


# --- time on task -------------------------------------------------------------------------------


def test_time_on_task_counts_activity_and_skips_idle_gaps(
    campaign: AnnotationCampaign, people: dict[str, Any], settings: Any
) -> None:
    settings.ANNOTATION_IDLE_SECONDS = 60
    row = _take(campaign, people["a1"])
    start = timezone.now()

    def at(seconds: float) -> None:
        Assignment.objects.filter(pk=row.pk).update(
            last_activity=start + timedelta(seconds=seconds) - timedelta(seconds=0)
        )

    # activity 30 s after the last one counts; one 10 minutes later does not
    Assignment.objects.filter(pk=row.pk).update(
        last_activity=timezone.now() - timedelta(seconds=30)
    )
    assert services.activity(row, people["a1"]).active_seconds == pytest.approx(30, abs=2)
    Assignment.objects.filter(pk=row.pk).update(
        last_activity=timezone.now() - timedelta(minutes=10)
    )
    assert services.activity(row, people["a1"]).active_seconds == pytest.approx(30, abs=2)
    Assignment.objects.filter(pk=row.pk).update(
        last_activity=timezone.now() - timedelta(seconds=20)
    )
    z, y, x = _inside(row)
    services.save(row, people["a1"], 0, [point_op("a", z, y, x)])
    row.refresh_from_db()
    assert row.active_seconds == pytest.approx(50, abs=3)
    del at


# --- review -------------------------------------------------------------------------------------


def test_review_reject_fix_resubmit_approve(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    services.save(row, people["a1"], 0, [point_op("a", z, y, x)])
    with pytest.raises(Conflict) as stale:
        services.submit(row, people["a1"], 0)
    assert stale.value.extra["current_version"] == 1
    services.submit(row, people["a1"], 1)
    with pytest.raises(Conflict, match="no longer be edited"):
        services.save(row, people["a1"], 1, [point_op("b", z, y, x)])
    with pytest.raises(NotAllowed, match="reviewers"):
        services.next_review(campaign, people["a2"])
    held = services.next_review(campaign, people["rv"])
    assert held is not None and held.pk == row.pk
    with pytest.raises(InvalidRequest, match="Say what to fix"):
        services.reject(row, people["rv"], "")
    services.reject(row, people["rv"], "You missed the nucleus at the top.")
    again = _take(campaign, people["a1"])
    assert again.pk == row.pk and again.state == AssignmentState.REJECTED
    assert again.review_comment.startswith("You missed")
    services.save(again, people["a1"], 1, [point_op("b", z, y + 1, x)])
    services.submit(again, people["a1"], 2)
    assert services.next_review(campaign, people["rv"]).pk == row.pk  # type: ignore[union-attr]
    done = services.approve(row, people["rv"])
    assert done.state == AssignmentState.APPROVED
    with pytest.raises(Conflict):
        services.approve(row, people["rv"])


def test_nobody_reviews_their_own_task(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    services.member_add(campaign, people["owner"], "rv", "annotator")
    row = _take(campaign, people["rv"])
    services.submit(row, people["rv"], 0)
    assert services.next_review(campaign, people["rv"]) is None
    with pytest.raises(NotAllowed, match="own"):
        services.approve(row, people["rv"])


# --- audit and visibility -----------------------------------------------------------------------


def test_the_audit_log_records_who_did_what(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    row = _take(campaign, people["a1"])
    z, y, x = _inside(row)
    services.save(row, people["a1"], 0, [point_op("a", z, y, x)])
    services.submit(row, people["a1"], 1)
    actions = list(
        AuditEntry.objects.filter(campaign=campaign).order_by("id").values_list("action", flat=True)
    )
    assert actions[0] == "campaign.create"
    assert actions[-3:] == ["assignment.take", "annotations.save", "assignment.submit"]
    saves = selectors.audit_of(campaign, action="annotations", actor="a1")
    assert [e.detail["version"] for e in saves] == [1]


def test_annotators_see_only_their_own_assignments(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    mine = _take(campaign, people["a1"])
    theirs = _take(campaign, people["a2"])
    visible = set(selectors.assignments_visible(people["a1"]).values_list("pk", flat=True))
    assert mine.pk in visible and theirs.pk not in visible
    for who in ("rv", "owner"):
        visible = set(selectors.assignments_visible(people[who]).values_list("pk", flat=True))
        assert {mine.pk, theirs.pk} <= visible
    assert not selectors.assignments_visible(people["outsider"]).exists()


def test_a_campaign_of_a_dataset_one_cannot_see_is_hidden(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    assert selectors.campaigns_visible(people["a1"]).filter(pk=campaign.pk).exists()
    campaign.dataset.visibility = "private"
    campaign.dataset.save()
    assert not selectors.campaigns_visible(people["a1"]).filter(pk=campaign.pk).exists()
    assert selectors.campaigns_visible(people["owner"]).filter(pk=campaign.pk).exists()
