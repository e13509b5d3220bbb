"""What the task page's hot requests cost in SQL statements: a save of 10 points, a "next task"
hand-out and a labels GET, each through the API as the page sends it (token authentication).

The figures are the statements each request sends after the work of ``bench/annotate.py``'s
profile (bench/README.md): a regression that adds a statement (a lazy foreign key read, a
second permission query, a read-back after a write) fails here, so the counts are exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from annotation_testdata import painted_campaign, point_op
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from webapp.annotation import services
from webapp.annotation.models import (
    Annotation,
    AnnotationCampaign,
    Assignment,
    AuditAction,
    AuditEntry,
    Revision,
)

# Transactions as in production: a request's atomic blocks are BEGIN and COMMIT (not counted),
# where a test inside a transaction would see a SAVEPOINT and a RELEASE for each.
pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1/annotation/"
# Statements of each request (the token lookup included).
SAVE_STATEMENTS = 9
SAVE_CHANGING_STATEMENTS = 10  # moves and deletes too: one more, closing the old rows
NEXT_STATEMENTS = 8
LABELS_GET_STATEMENTS = 3


def _token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _points(box: Any, start: int, n: int = 10) -> list[dict[str, Any]]:
    z, y, x = (s + n // 2 for s, n in zip(box.start, box.size, strict=True))
    return [point_op(f"p{i}", z, y, x + (i % 5) * 0.5) for i in range(start, start + n)]


def _statements(captured: CaptureQueriesContext) -> str:
    return "\n".join(f"{i}. {q['sql'][:300]}" for i, q in enumerate(captured.captured_queries, 1))


def test_a_save_of_ten_points(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    task = services.next_task(campaign, people["a1"])
    assert task is not None
    client = _token_client(people["a1"])
    url = f"{API}assignments/{task.pk}/annotations/"
    # The first save of a request-serving process imports and caches; count a later one.
    first = client.post(url, {"base_version": 0, "ops": _points(task.box, 0)}, format="json")
    assert first.status_code == 200, first.content
    with CaptureQueriesContext(connection) as captured:
        saved = client.post(url, {"base_version": 1, "ops": _points(task.box, 10)}, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["version"] == 2 and saved.json()["count"] == 20
    assert len(captured) == SAVE_STATEMENTS, _statements(captured)
    # Moves and deletes close the rows they replace: one more statement.
    moved = [{**op, "coords": [[c + 0.25 for c in op["coords"][0]]]} for op in _points(task.box, 0)]
    ops = moved[:5] + [{"op": "delete", "uid": f"p{i}"} for i in range(10, 15)]
    with CaptureQueriesContext(connection) as captured:
        saved = client.post(url, {"base_version": 2, "ops": ops}, format="json")
    assert saved.status_code == 200, saved.content
    body = saved.json()
    assert (body["version"], body["changed"], body["deleted"], body["count"]) == (3, 5, 5, 15)
    assert len(captured) == SAVE_CHANGING_STATEMENTS, _statements(captured)
    # Everything a save records is there: the rows, the revision, the version, the audit entry.
    assert Annotation.objects.filter(assignment=task, valid_to__isnull=True).count() == 15
    assert list(Revision.objects.filter(assignment=task).values_list("number", flat=True)) == [
        1,
        2,
        3,
    ]
    assert Assignment.objects.get(pk=task.pk).version == 3
    saves = AuditEntry.objects.filter(assignment=task, action=AuditAction.ANNOTATIONS_SAVE)
    assert saves.count() == 3
    assert saves.order_by("-id")[0].detail == {
        "created": 0,
        "changed": 5,
        "deleted": 5,
        "count": 15,
        "version": 3,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"base_version": 0, "ops": [{"op": "upsert", "uid": "q", "kind": "point",
                                     "label": ["nucleus"], "coords": [[5, 16, 16]]}]},
        {"base_version": 0, "ops": [{"op": "upsert", "uid": "q", "kind": {"a": 1},
                                     "label": "nucleus", "coords": [[5, 16, 16]]}]},
        {"base_version": 0, "ops": [{"op": "upsert", "uid": "q", "kind": "point",
                                     "label": "nucleus", "coords": [["5", 16, 16]]}]},
        {"base_version": 0, "ops": [{"op": "upsert", "uid": 7, "kind": "point",
                                     "label": "nucleus", "coords": [[5, 16, 16]]}]},
        {"base_version": 0, "ops": ["upsert"]},
        {"base_version": 0, "ops": {"op": "delete", "uid": "q"}},
        {"base_version": 0},
        {"base_version": "zero", "ops": [{"op": "delete", "uid": "q"}]},
        {"base_version": True, "ops": [{"op": "delete", "uid": "q"}]},
        {"base_version": -1, "ops": [{"op": "delete", "uid": "q"}]},
        {"ops": [{"op": "delete", "uid": "q"}]},
        ["not", "an", "object"],
    ],
)  # fmt: skip
def test_the_one_validation_pass_refuses_malformed_saves(
    campaign: AnnotationCampaign, people: dict[str, Any], body: Any
) -> None:
    """DRF no longer checks the ops before the service parses them: each malformed body is
    still a 400 with a message, and nothing is saved."""
    task = services.next_task(campaign, people["a1"])
    assert task is not None
    client = _token_client(people["a1"])
    url = f"{API}assignments/{task.pk}/annotations/"
    answer = client.post(url, body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["message"]
    assert Assignment.objects.get(pk=task.pk).version == 0
    assert not Revision.objects.filter(assignment=task).exists()


def test_a_next_task_hand_out(campaign: AnnotationCampaign, people: dict[str, Any]) -> None:
    client = _token_client(people["a1"])
    url = f"{API}campaigns/{campaign.pk}/next/"
    first = client.post(url)
    assert first.status_code == 200, first.content
    mine = Assignment.objects.get(pk=first.json()["id"])
    services.submit(mine, people["a1"], 0)
    with CaptureQueriesContext(connection) as captured:
        handed = client.post(url)
    assert handed.status_code == 200, handed.content
    assert handed.json()["id"] != mine.pk and handed.json()["annotator"] == "a1"
    # SQLite takes its write lock with a write to the campaign row first (services docstring).
    expected = NEXT_STATEMENTS + (1 if connection.vendor == "sqlite" else 0)
    assert len(captured) == expected, _statements(captured)
    if connection.vendor == "postgresql":  # the take locks its slot, skipping locked ones
        take = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
        assert len(take) == 1 and "FOR UPDATE" in take[0] and "SKIP LOCKED" in take[0], take
    taken = AuditEntry.objects.filter(actor=people["a1"], action=AuditAction.ASSIGNMENT_TAKE)
    assert taken.count() == 2


def test_a_labels_get(people: dict[str, Any]) -> None:
    painted = painted_campaign(people, (20, 64, 64), [4.0, 6.4, 6.4], [0.0, 0.0, 0.0])
    task = services.next_task(painted, people["a1"])
    assert task is not None
    client = _token_client(people["a1"])
    url = f"{API}assignments/{task.pk}/labels/"
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        state = client.get(url)
    assert state.status_code == 200, state.content
    assert state.json()["version"] == 0
    assert len(captured) == LABELS_GET_STATEMENTS, _statements(captured)
