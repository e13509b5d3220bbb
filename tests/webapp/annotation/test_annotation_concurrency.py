"""Annotation under concurrency: threads on their own database connections.

1. Hand-out: six annotators, each from two threads (two browser tabs), ask for the next task at
   once, skip some, save a point and submit the rest, while a monitor checks in one-statement
   snapshots that no box ever has more than N annotators nor one annotator twice. At the end every
   slot was taken (and submitted) by exactly one person, and the audit log shows no slot taken
   twice without being given back between.
2. Saves: eight tabs of one annotator save on one assignment, each from the version it last
   read. Per version exactly one save wins; the others get ``Conflict`` naming the current
   version, apply their change on top and try again, so in the end every acknowledged change is
   in the final state and the history is one unbroken chain of versions.

Runs on PostgreSQL (``SELECT ... FOR UPDATE SKIP LOCKED``, row locks) and on SQLite (immediate
transactions: serialised writes).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from annotation_testdata import UserFactory, campaign_with, image_layer, point_op
from django.db import connection, connections
from django.db.models import Count, Q

from webapp.annotation import services
from webapp.annotation.models import (
    Annotation,
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    AuditAction,
    AuditEntry,
    Revision,
    TaskBox,
)
from webapp.core.errors import Conflict, NotAllowed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

N = 2
ANNOTATORS = 6
TABS = 2
DEADLINE_S = 180


def _snapshot(campaign_id: int) -> list[tuple[int, int, int]]:
    """(box, annotators, distinct annotators) per box, in one statement."""
    return list(
        TaskBox.objects.filter(campaign_id=campaign_id)
        .annotate(
            taken=Count("assignments", filter=Q(assignments__annotator__isnull=False)),
            people=Count(
                "assignments__annotator",
                filter=Q(assignments__annotator__isnull=False),
                distinct=True,
            ),
        )
        .values_list("id", "taken", "people")
    )


def _annotator(
    campaign_id: int,
    user_id: int,
    seed: int,
    skipped: set[int],
    errors: list[BaseException],
    tally: Counter[str],
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed)
    try:
        campaign = AnnotationCampaign.objects.get(id=campaign_id)
        user = UserFactory._meta.model.objects.get(id=user_id)
        started = time.monotonic()
        while time.monotonic() - started < DEADLINE_S:
            try:
                row = services.next_task(campaign, user)
            except Conflict:
                with lock:
                    tally["next-conflict"] += 1
                continue
            if row is None:
                return
            try:
                with lock:
                    skip_it = row.box_id not in skipped and rng.random() < 0.15
                    if skip_it:
                        skipped.add(row.box_id)
                if skip_it and row.version == 0:
                    services.skip(row, user)
                    outcome = "skip"
                else:
                    box = row.box
                    centre = [s + n // 2 for s, n in zip(box.start, box.size, strict=True)]
                    op = point_op(f"u{user_id}-b{box.pk}-{seed}", *centre)
                    services.save(row, user, row.version, [op])
                    row.refresh_from_db()
                    services.submit(row, user, row.version)
                    outcome = "submit"
            except Conflict:
                outcome = "tab-conflict"  # the other tab saved or submitted first
            except NotAllowed:
                outcome = "tab-gave-back"  # the other tab skipped it: no longer this person's
            with lock:
                tally[outcome] += 1
        raise AssertionError("an annotator thread ran out of time")
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        connection.close()


def _monitor(
    campaign_id: int, stop: threading.Event, breaches: list[Any], checks: list[int]
) -> None:
    try:
        while not stop.is_set():
            for box_id, taken, people in _snapshot(campaign_id):
                if taken > N or people != taken:
                    breaches.append((box_id, taken, people))
            checks[0] += 1
            time.sleep(0.005)
    finally:
        connection.close()


def test_many_annotators_in_two_tabs_never_share_a_slot(transactional_db: Any) -> None:
    owner = UserFactory(username="owner")
    people = [UserFactory(username=f"ann{i}") for i in range(ANNOTATORS)]
    layer = image_layer(owner)
    campaign = campaign_with(
        layer, owner, annotators=tuple(people), redundancy=N, box_size_um=[4.0, 3.2, 3.2]
    )
    services.boxes_tile(campaign, owner)  # 2 x 4 x 4 boxes of 10 x 16 x 16 voxels
    boxes = TaskBox.objects.filter(campaign=campaign).count()
    assert boxes == 32

    errors: list[BaseException] = []
    breaches: list[Any] = []
    checks = [0]
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    skipped: dict[int, set[int]] = defaultdict(set)  # per person, shared by their tabs
    threads = [
        threading.Thread(
            target=_annotator,
            args=(campaign.id, user.id, i * 10 + tab, skipped[user.id], errors, tally, lock),
        )
        for i, user in enumerate(people)
        for tab in range(TABS)
    ]
    monitor = threading.Thread(target=_monitor, args=(campaign.id, stop, breaches, checks))
    monitor.start()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_S + 30)
    stop.set()
    monitor.join(timeout=10)
    elapsed = time.monotonic() - started
    print(f"{connections['default'].vendor}: {dict(tally)} in {elapsed:.1f} s, {checks[0]} checks")

    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "annotators did not finish"
    assert not breaches, breaches[:5]
    assert checks[0] > 0
    assert tally["skip"] > 0
    # Every slot was handed out once and finished; one person never holds two slots of a box.
    rows = Assignment.objects.filter(box__campaign=campaign)
    assert rows.count() == boxes * N
    assert set(rows.values_list("state", flat=True)) == {AssignmentState.SUBMITTED}
    assert tally["submit"] == boxes * N
    per_box = Counter(rows.values_list("box_id", "annotator_id"))
    assert max(per_box.values()) == 1
    # The audit log: a slot is taken again only after it was given back (skipped).
    events: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for action, assignment_id, actor_id in (
        AuditEntry.objects.filter(
            campaign=campaign,
            action__in=[AuditAction.ASSIGNMENT_TAKE, AuditAction.ASSIGNMENT_SKIP],
        )
        .order_by("id")
        .values_list("action", "assignment_id", "actor_id")
    ):
        events[assignment_id].append((action, actor_id))
    for assignment_id, history in events.items():
        holder = None
        for action, actor in history:
            if action == AuditAction.ASSIGNMENT_TAKE:
                assert holder is None, (assignment_id, history)
                holder = actor
            else:
                assert holder == actor, (assignment_id, history)
                holder = None
    # Each submitted slot holds exactly its annotator's one point.
    points = Counter(
        Annotation.objects.filter(
            assignment__box__campaign=campaign, valid_to__isnull=True
        ).values_list("assignment_id", flat=True)
    )
    assert all(points[pk] >= 1 for pk in rows.values_list("id", flat=True))


SAVERS = 8
SAVES_EACH = 6


def _saver(
    assignment_id: int,
    user_id: int,
    tab: int,
    start: threading.Barrier,
    won: list[tuple[int, str]],
    refused: list[tuple[int, int]],
    errors: list[BaseException],
    lock: threading.Lock,
) -> None:
    try:
        user = UserFactory._meta.model.objects.get(id=user_id)
        row = Assignment.objects.select_related("box").get(id=assignment_id)
        box = row.box
        start.wait(timeout=30)
        base = row.version
        for k in range(SAVES_EACH):
            uid = f"tab{tab}-{k}"
            op = point_op(uid, box.z0 + tab % box.depth, box.y0 + k, box.x0 + tab)
            while True:
                try:
                    result = services.save(row, user, base, [op])
                except Conflict as exc:
                    current = exc.extra["current_version"]
                    assert isinstance(current, int) and current > base
                    with lock:
                        refused.append((base, current))
                    base = current  # reload and apply the unsaved change on top
                    continue
                with lock:
                    won.append((result.version, uid))
                base = result.version
                break
    except BaseException as exc:
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_saves_on_one_task_one_winner_per_version_nothing_lost(
    transactional_db: Any,
) -> None:
    owner, annotator = UserFactory(username="owner"), UserFactory(username="ann")
    campaign = campaign_with(image_layer(owner), owner, annotators=(annotator,))
    services.boxes_tile(campaign, owner)
    row = services.next_task(campaign, annotator)
    assert row is not None

    start = threading.Barrier(SAVERS)
    won: list[tuple[int, str]] = []
    refused: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_saver, args=(row.id, annotator.id, tab, start, won, refused, errors, lock)
        )
        for tab in range(SAVERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    print(f"{connections['default'].vendor}: {len(won)} saves, {len(refused)} conflicts")

    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    total = SAVERS * SAVES_EACH
    # One winner per version: versions 1..total, each acknowledged once.
    assert sorted(v for v, _ in won) == list(range(1, total + 1))
    assert refused, "the tabs never collided"
    row.refresh_from_db()
    assert row.version == total
    # Nothing lost: every acknowledged change is current, and the history is one chain.
    current = set(
        Annotation.objects.filter(assignment=row, valid_to__isnull=True).values_list(
            "uid", flat=True
        )
    )
    assert current == {uid for _, uid in won}
    revisions = list(
        Revision.objects.filter(assignment=row).order_by("number").values_list("number", "based_on")
    )
    assert revisions == [(n, n - 1) for n in range(1, total + 1)]
    for version, uid in won:
        assert Annotation.objects.filter(assignment=row, uid=uid, valid_from=version).exists()
