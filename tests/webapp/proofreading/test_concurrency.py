"""Hand-out under concurrency: many threads, each on its own database connection, asking for
the next items and deciding, skipping and undoing at once, while a monitor checks the invariant
in single-statement snapshots. No item may ever hold more than N live first-round verdicts plus
claims (one in the second round), and no reviewer two live verdicts on one item in one round.

Each reviewer works from two threads (two browser tabs), so that a reviewer's own requests race
too. Runs on PostgreSQL (``SELECT ... FOR UPDATE SKIP LOCKED``) and on SQLite (serialised
writes).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Count, Q
from django.utils import timezone
from proofreading_testdata import UserFactory, campaign_with, layer_with_detections

from webapp.core.errors import Conflict
from webapp.proofreading import services
from webapp.proofreading.models import (
    CampaignItem,
    Claim,
    ItemStatus,
    ProofreadingCampaign,
    Verdict,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ITEMS = 60
N = 2
REVIEWERS = 4
THREADS_PER_REVIEWER = 2
EXPERTS = 2
DEADLINE_S = 240


def _places_in_use(campaign: ProofreadingCampaign, round_: int) -> list[tuple[int, int, int]]:
    """(item, live verdicts, live claims) per item, read in one statement (one snapshot)."""
    now = timezone.now()
    rows = (
        CampaignItem.objects.filter(campaign=campaign)
        .annotate(
            v=Count(
                "verdicts",
                filter=Q(verdicts__round=round_, verdicts__undone_at__isnull=True),
                distinct=True,
            ),
            c=Count(
                "claims",
                filter=Q(claims__round=round_, claims__expires_at__gt=now),
                distinct=True,
            ),
        )
        .values_list("id", "v", "c")
    )
    return list(rows)


def _worker(
    campaign_id: int,
    user_id: int,
    round_: int,
    seed: int,
    stop: threading.Event,
    first_round_done: threading.Event,
    errors: list[BaseException],
    tally: Counter[str],
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed)
    try:
        campaign = ProofreadingCampaign.objects.get(id=campaign_id)
        user = UserFactory._meta.model.objects.get(id=user_id)
        empty = 0
        while not stop.is_set():
            try:
                handouts = services.items_next(
                    campaign, user, count=rng.randint(1, 3), round_=round_
                )
            except Conflict:
                continue
            if not handouts:
                empty += 1
                # Experts wait for the first round to end: it keeps routing items to them.
                if empty > 40 and (round_ == 1 or first_round_done.is_set()):
                    return
                time.sleep(0.02)
                continue
            empty = 0
            item = handouts[0].item
            action = rng.random()
            try:
                if action < 0.08:
                    services.item_skip(campaign, user, item.id, round_=round_)
                    outcome = "skip"
                else:
                    verdict = services.verdict_create(
                        campaign,
                        user,
                        item.id,
                        rng.choice(["tp", "tp", "tp", "fp", "uncertain"])
                        if round_ == 1
                        else rng.choice(["tp", "fp"]),
                        round_=round_,
                    )
                    outcome = "verdict"
                    if action > 0.93:
                        services.verdict_undo(campaign, user, verdict.id)
                        outcome = "undo"
            except Conflict:
                outcome = "conflict"  # the other tab of this reviewer got there first
            with lock:
                tally[outcome] += 1
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        connection.close()


def _monitor(
    campaign_id: int, stop: threading.Event, breaches: list[Any], checks: list[int]
) -> None:
    try:
        campaign = ProofreadingCampaign.objects.get(id=campaign_id)
        while not stop.is_set():
            for round_, capacity in ((1, N), (2, 1)):
                for item_id, verdicts, claims in _places_in_use(campaign, round_):
                    if verdicts + claims > capacity:
                        breaches.append((round_, item_id, verdicts, claims))
            checks[0] += 1
            time.sleep(0.01)
    finally:
        connection.close()


def test_concurrent_reviewers_never_exceed_n_per_item(transactional_db: Any) -> None:
    owner = UserFactory(username="owner")
    reviewers = [UserFactory(username=f"rev{i}") for i in range(REVIEWERS)]
    experts = [UserFactory(username=f"exp{i}") for i in range(EXPERTS)]
    layer = layer_with_detections(ITEMS, owner=owner)
    campaign = campaign_with(
        layer,
        owner,
        reviewers=tuple(reviewers),
        experts=tuple(experts),
        reviewers_per_item=N,
        seed=11,
    )
    stop, monitor_stop, first_round_done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []
    breaches: list[Any] = []
    checks = [0]
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    shared = (stop, first_round_done, errors, tally, lock)
    threads = [
        threading.Thread(
            target=_worker,
            args=(
                campaign.id,
                user.id,
                1,
                i * 10 + tab,
                stop,
                first_round_done,
                errors,
                tally,
                lock,
            ),
        )
        for i, user in enumerate(reviewers)
        for tab in range(THREADS_PER_REVIEWER)
    ]
    threads += [
        threading.Thread(
            target=_worker,
            args=(campaign.id, user.id, 2, 100 + i, *shared),
        )
        for i, user in enumerate(experts)
    ]
    monitor = threading.Thread(target=_monitor, args=(campaign.id, monitor_stop, breaches, checks))
    monitor.start()
    started = time.monotonic()
    for thread in threads[: REVIEWERS * THREADS_PER_REVIEWER]:
        thread.start()
    # Experts start while the first round is under way, so both rounds race.
    time.sleep(0.5)
    for thread in threads[REVIEWERS * THREADS_PER_REVIEWER :]:
        thread.start()
    first_round = threads[: REVIEWERS * THREADS_PER_REVIEWER]
    for thread in first_round:
        thread.join(timeout=max(1.0, DEADLINE_S - (time.monotonic() - started)))
    first_round_done.set()
    for thread in threads:
        thread.join(timeout=max(1.0, DEADLINE_S - (time.monotonic() - started)))
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    monitor_stop.set()
    monitor.join(timeout=10)
    elapsed = time.monotonic() - started
    print(f"{connections['default'].vendor}: {dict(tally)} in {elapsed:.1f} s, {checks[0]} checks")

    assert not errors, errors
    assert not breaches, breaches[:5]
    assert checks[0] > 0
    assert not any(t.is_alive() for t in threads), "workers did not finish"
    # At most N first-round verdicts per item, never two from one reviewer; exactly N where
    # the first round decided (an undo after an expert's verdict may leave one fewer).
    live = Verdict.objects.filter(campaign=campaign, undone_at__isnull=True)
    per_item = Counter(live.filter(round=1).values_list("item_id", flat=True))
    assert len(per_item) == ITEMS and max(per_item.values()) == N
    by_first_round = CampaignItem.objects.filter(campaign=campaign, verdict_source="first_round")
    assert {per_item[i] for i in by_first_round.values_list("id", flat=True)} == {N}
    pairs = Counter(live.values_list("item_id", "reviewer_id", "round"))
    assert max(pairs.values()) == 1
    # Second round: each routed item settled by exactly one expert verdict.
    per_item_2 = Counter(live.filter(round=2).values_list("item_id", flat=True))
    assert not per_item_2 or max(per_item_2.values()) == 1
    routed = CampaignItem.objects.filter(campaign=campaign).exclude(
        status=ItemStatus.DECIDED, verdict_source="first_round"
    )
    assert set(routed.values_list("id", flat=True)) == set(per_item_2)
    assert (
        not CampaignItem.objects.filter(campaign=campaign)
        .exclude(status=ItemStatus.DECIDED)
        .exists()
    )
    assert tally["verdict"] + tally["undo"] > ITEMS * N
    assert (
        not Claim.objects.filter(campaign=campaign, expires_at__gt=timezone.now())
        .exclude(item__status=ItemStatus.PENDING)
        .filter(round=1)
        .exists()
    )
