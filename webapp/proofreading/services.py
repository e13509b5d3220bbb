"""Writes of the proofreading app: campaigns, members, hand-outs, verdicts, undo, skips, flags,
missed objects. Every function checks the caller's role itself and raises the domain errors of
``webapp.core.errors`` (400 bad values, 403 wrong role, 404 unknown object, 409 state forbids).

Concurrency (the issue's "two reviewers never get the same detection beyond N"): every write
that adds a claim or a verdict to an item holds that item's row lock until it commits, and
counts the item's live claims and verdicts *after* taking the lock, with a clock read after it
too. Whatever committed before is then counted, and whatever comes after waits for the lock and
counts this. So an item never has more than N live claims plus first-round verdicts (one in the
second round), and never two from one reviewer (also a partial unique index on live verdicts).

- PostgreSQL: ``next`` takes candidates with ``SELECT ... FOR UPDATE SKIP LOCKED`` (reviewers
  asking at once get different items and never wait on each other); a verdict waits for its
  item's lock. All paths lock items before anything else, so they cannot deadlock.
- SQLite has no row locks: each of these transactions begins with a write to the campaign row,
  which takes SQLite's single write lock at once, so they run one after the other (and the
  reads inside see everything committed before).

Time per decision is measured on the server: from when the item was handed out to this
reviewer, or from the reviewer's previous action in the campaign if that came later (items
handed out ahead for the page to preload are not timed while an earlier one is on screen), to
the verdict. A verdict given without a hand-out (e.g. from a gallery page) has no time.

Skips: a skipped item loses the reviewer's claim (others may take the place) and is handed to
that reviewer again only when nothing else is left for them (it goes to the end of their queue).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from pipeline.agreement import detection_consensus
from pipeline.units import nanometres_per_unit
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed, NotFound
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.filters import FilterValues, layer_filter_values
from webapp.detections.models import Detection
from webapp.proofreading.models import (
    FIRST_ROUND,
    SECOND_ROUND,
    CampaignItem,
    CampaignMember,
    CampaignState,
    Claim,
    ConsensusRule,
    EventAction,
    ItemStatus,
    MissedObject,
    ProofreadingCampaign,
    QueueOrder,
    ReviewEvent,
    Role,
    Selection,
    Verdict,
    detection_exists,
)
from webapp.proofreading.selection import Candidates, queue_keys, sample_indices
from webapp.proofreading.verdict_sets import (
    default_verdict_set,
    uncertain_names,
    verdict_classes,
    verdict_set_json,
    verdict_set_parse,
)

MAX_REVIEWERS_PER_ITEM = 10
MIN_CLAIM_SECONDS, MAX_CLAIM_SECONDS = 30, 24 * 3600
# Items one ``next`` may hand out: a queue page's current one plus those it preloads, or a
# gallery page (count = its page size).
MAX_PREFETCH = 100
ITEM_BATCH_ROWS = 5000
MAX_REASON = 500
# Voxel positions are stored as the detections' are: within +-2^31.
MAX_POSITION = 2.0**31


# --- helpers ------------------------------------------------------------------------------------


def roles_of(campaign: ProofreadingCampaign, user: User) -> set[str]:
    return set(
        CampaignMember.objects.filter(campaign=campaign, user=user).values_list("role", flat=True)
    )


def _require_role(
    campaign: ProofreadingCampaign, user: User, roles: Iterable[str], message: str
) -> None:
    if user.is_superuser:
        return
    if not roles_of(campaign, user) & set(roles):
        raise NotAllowed(message)


def _require_round_role(campaign: ProofreadingCampaign, user: User, round_: int) -> None:
    if round_ == FIRST_ROUND:
        _require_role(
            campaign,
            user,
            (Role.REVIEWER,),
            "You are not a reviewer of this campaign; a manager can add you.",
        )
    elif round_ == SECOND_ROUND:
        _require_role(
            campaign,
            user,
            (Role.EXPERT,),
            "Only the campaign's experts review in the second round.",
        )
    else:
        raise InvalidRequest("round must be 1 (first round) or 2 (second round, experts).")


def _require_manager(campaign: ProofreadingCampaign, user: User) -> None:
    _require_role(
        campaign, user, (Role.MANAGER,), "Only the campaign's managers can change its settings."
    )


def _require_open(campaign: ProofreadingCampaign) -> None:
    if campaign.state != CampaignState.OPEN:
        raise Conflict("The campaign is closed; a manager can reopen it.")


def _serialise_on_sqlite(campaign: ProofreadingCampaign) -> None:
    """SQLite: take the database's write lock now (see the module docstring)."""
    if connection.vendor == "sqlite":
        ProofreadingCampaign.objects.filter(id=campaign.id).update(state=F("state"))


def _lock_item(campaign: ProofreadingCampaign, item_id: int) -> CampaignItem:
    item = (
        CampaignItem.objects.select_for_update(of=("self",))
        .filter(campaign=campaign, id=item_id)
        .select_related("detection")
        .first()
    )
    if item is None:
        raise InvalidRequest(f"Item {item_id} is not part of campaign {campaign.id}.")
    return item


def item_id_for(
    campaign: ProofreadingCampaign, *, item: int | None = None, segment_id: int | None = None
) -> int:
    """The id of the campaign's item named by its id or its detection's segment id (400 when
    neither or both are given, or when the campaign has no such item)."""
    if (item is None) == (segment_id is None):
        raise InvalidRequest("Name the detection by exactly one of item or segment_id.")
    if item is not None:
        found = CampaignItem.objects.filter(campaign=campaign, id=item).values_list("id", flat=True)
        what = f"Item {item}"
    else:
        assert segment_id is not None
        found = CampaignItem.objects.filter(campaign=campaign, segment_id=segment_id).values_list(
            "id", flat=True
        )
        what = f"Segment {segment_id}"
    item_id = found.first()
    if item_id is None:
        raise InvalidRequest(f"{what} is not part of campaign {campaign.id}.")
    return int(item_id)


def _verdict_name(campaign: ProofreadingCampaign, name: str) -> str:
    names = [c.name for c in verdict_classes(campaign.verdict_set)]
    if name not in names:
        raise InvalidRequest(
            f"Unknown verdict {name[:40]!r}; this campaign's verdicts are: {', '.join(names)}."
        )
    return name


def _capacity(campaign: ProofreadingCampaign, round_: int) -> int:
    return campaign.reviewers_per_item if round_ == FIRST_ROUND else 1


def _round_status(round_: int) -> str:
    return ItemStatus.PENDING if round_ == FIRST_ROUND else ItemStatus.SECOND_ROUND


def _places_taken(item: CampaignItem, round_: int, user: User, now: datetime) -> int:
    """Live verdicts plus others' live claims on ``item`` in ``round_`` (under its lock)."""
    verdicts = Verdict.objects.filter(item=item, round=round_, undone_at__isnull=True).count()
    claims = (
        Claim.objects.filter(item=item, round=round_, expires_at__gt=now)
        .exclude(reviewer=user)
        .count()
    )
    return verdicts + claims


def _has_live_verdict(item: CampaignItem, user: User, round_: int) -> Verdict | None:
    return Verdict.objects.filter(
        item=item, reviewer=user, round=round_, undone_at__isnull=True
    ).first()


def item_recompute(campaign: ProofreadingCampaign, item: CampaignItem) -> CampaignItem:
    """Store the item's consensus from its live verdicts (``pipeline.agreement``'s rule)."""
    live = list(
        Verdict.objects.filter(item=item, undone_at__isnull=True)
        .order_by("updated", "id")
        .values_list("round", "verdict")
    )
    first = [v for r, v in live if r == FIRST_ROUND]
    second = [v for r, v in live if r == SECOND_ROUND]
    consensus = detection_consensus(
        first,
        second,
        quorum=campaign.reviewers_per_item,
        rule="majority" if campaign.consensus_rule == ConsensusRule.MAJORITY else "unanimous",
        uncertain=uncertain_names(campaign.verdict_set),
    )
    item.status = consensus.status
    item.verdict = consensus.verdict or ""
    item.verdict_source = consensus.source or ""
    item.majority = consensus.majority or ""
    item.reason = consensus.reason[:40]
    item.first_round_count = len(first)
    item.save(
        update_fields=[
            "status",
            "verdict",
            "verdict_source",
            "majority",
            "reason",
            "first_round_count",
            "updated",
        ]
    )
    return item


def _event(
    campaign: ProofreadingCampaign,
    item: CampaignItem,
    actor: User,
    action: str,
    round_: int,
    *,
    verdict: Verdict | None = None,
    before: str = "",
    after: str = "",
    reason: str = "",
) -> ReviewEvent:
    return ReviewEvent.objects.create(
        campaign=campaign,
        item=item,
        verdict=verdict,
        actor=actor,
        action=action,
        round=round_,
        before=before,
        after=after,
        reason=reason,
    )


# --- campaigns ----------------------------------------------------------------------------------


def _optional_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRequest(f"{name} must be a finite number.")
    return number


def _candidates(
    layer: Layer,
    volume_min: float | None,
    sphericity_min: float | None,
    volume_max: float | None = None,
) -> Candidates:
    """The layer's detections passing the filter, in segment-id order (the filter keeps
    ``volume >= volume_min`` and ``sphericity >= sphericity_min``, as ``pipeline.thresholds``,
    and ``volume <= volume_max``)."""
    bounds = FilterValues(volume_min, volume_max, sphericity_min)
    queryset = Detection.objects.filter(bounds.q(), layer_id=layer.id)
    columns = ["id", "segment_id", "volume", "sphericity", "mean_probability"]
    columns += ["centroid_z", "centroid_y", "centroid_x"]
    rows = queryset.order_by("segment_id").values_list(*columns)
    frame = pd.DataFrame.from_records(list(rows), columns=columns)

    def floats(*names: str) -> Any:
        return frame[list(names)].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)

    return Candidates(
        ids=frame["id"].to_numpy(dtype=np.int64),
        segment_ids=frame["segment_id"].to_numpy(dtype=np.int64),
        volume=floats("volume")[:, 0],
        sphericity=floats("sphericity")[:, 0],
        mean_probability=floats("mean_probability")[:, 0],
        centroids=floats("centroid_z", "centroid_y", "centroid_x"),
    )


def _items_insert(campaign: ProofreadingCampaign, candidates: Candidates, keys: Any) -> None:
    """Write one item per candidate. PostgreSQL: one INSERT ... SELECT FROM unnest(arrays)
    (100,000 items in well under a second; the ORM's bulk_create spent ~10 s building model
    objects and SQL); other databases: executemany of plain tuples."""
    table = connection.ops.quote_name(CampaignItem._meta.db_table)
    names = "campaign_id, detection_id, segment_id, queue_key, status, first_round_count, "
    names += "verdict, verdict_source, majority, reason, updated"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    pending = str(ItemStatus.PENDING)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT %s, d, s, k, %s, 0, '', '', '', '', %s "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::integer[]) AS t(d, s, k)",
                [
                    campaign.id,
                    pending,
                    now,
                    candidates.ids.tolist(),
                    candidates.segment_ids.tolist(),
                    np.asarray(keys).tolist(),
                ],
            )
            return
        for start in range(0, len(candidates), ITEM_BATCH_ROWS):
            stop = start + ITEM_BATCH_ROWS
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES (%s, %s, %s, %s, %s, 0, '', '', '', '', %s)",
                [
                    (campaign.id, int(d), int(sid), int(k), pending, now)
                    for d, sid, k in zip(
                        candidates.ids[start:stop],
                        candidates.segment_ids[start:stop],
                        np.asarray(keys)[start:stop],
                        strict=True,
                    )
                ],
            )


def _geometry(layer: Layer, any_detection_id: int | None) -> dict[str, list[float]]:
    """Voxel size and origin in um (voxel i's centre at origin + i * size, as the detections'
    physical columns): the size from the layer, the origin read back from one detection."""
    try:
        per_unit_um = nanometres_per_unit(layer.unit) / 1000.0
        size = [float(v) * per_unit_um for v in layer.voxel_size][-3:]
    except Exception:
        return {}
    if len(size) != 3 or not all(math.isfinite(v) and v > 0 for v in size):
        return {}
    origin = [0.0, 0.0, 0.0]
    detection = Detection.objects.filter(id=any_detection_id).first() if any_detection_id else None
    if detection is not None:
        centre = (detection.centroid_z, detection.centroid_y, detection.centroid_x)
        centre_um = (detection.centroid_z_um, detection.centroid_y_um, detection.centroid_x_um)
        origin = [round(u - c * s, 9) for c, u, s in zip(centre, centre_um, size, strict=True)]
    return {"voxel_size_um": size, "origin_um": origin}


@dataclass(frozen=True)
class CampaignSettings:
    """What a manager chooses when creating a campaign (see ``campaign_create``)."""

    name: str
    description: str = ""
    selection: str = Selection.ALL
    volume_min: float | None = None
    sphericity_min: float | None = None
    volume_max: float | None = None
    sample_size: int | None = None
    seed: int | None = None
    verdict_set: Any = None
    reviewers_per_item: int = 1
    consensus_rule: str = ConsensusRule.UNANIMOUS
    order: str = QueueOrder.RANDOM
    claim_seconds: int = 900


MAX_NAME = 200


def _check_settings(settings: CampaignSettings) -> None:
    if not settings.name.strip():
        raise InvalidRequest("name must not be empty.")
    if len(settings.name.strip()) > MAX_NAME:
        raise InvalidRequest(f"name must be at most {MAX_NAME} characters.")
    if settings.selection not in Selection.values:
        raise InvalidRequest(f"selection must be one of {', '.join(Selection.values)}.")
    if settings.order not in QueueOrder.values:
        raise InvalidRequest(f"order must be one of {', '.join(QueueOrder.values)}.")
    if settings.consensus_rule not in ConsensusRule.values:
        raise InvalidRequest(f"consensus_rule must be one of {', '.join(ConsensusRule.values)}.")
    if not 1 <= settings.reviewers_per_item <= MAX_REVIEWERS_PER_ITEM:
        raise InvalidRequest(f"reviewers_per_item must be between 1 and {MAX_REVIEWERS_PER_ITEM}.")
    if not MIN_CLAIM_SECONDS <= settings.claim_seconds <= MAX_CLAIM_SECONDS:
        raise InvalidRequest(
            f"claim_seconds must be between {MIN_CLAIM_SECONDS} and {MAX_CLAIM_SECONDS}."
        )
    filtered = (
        settings.volume_min is not None
        or settings.sphericity_min is not None
        or settings.volume_max is not None
    )
    if settings.selection == Selection.FILTER and not filtered:
        raise InvalidRequest(
            "The filter selection needs volume_min or sphericity_min (or volume_max), and the "
            "layer has no stored detection filter to take them from."
        )
    if settings.selection == Selection.ALL and filtered:
        raise InvalidRequest(
            "volume_min, volume_max and sphericity_min apply to the filter and sample "
            "selections only."
        )
    if (
        settings.volume_min is not None
        and settings.volume_max is not None
        and settings.volume_min > settings.volume_max
    ):
        raise InvalidRequest("volume_min must not be larger than volume_max.")
    if settings.selection == Selection.SAMPLE and settings.sample_size is None:
        raise InvalidRequest("The sample selection needs sample_size (K).")
    if settings.selection != Selection.SAMPLE and settings.sample_size is not None:
        raise InvalidRequest("sample_size applies to the sample selection only.")
    if settings.seed is not None and not 0 <= settings.seed < 2**63:
        raise InvalidRequest("seed must be between 0 and 2^63 - 1.")


def campaign_create(
    user: User,
    layer: Layer,
    settings: CampaignSettings,
    *,
    members: Sequence[tuple[str, str]] = (),
) -> ProofreadingCampaign:
    """Create a campaign over ``layer``'s detections, with one item per selected detection in
    its queue order, ``user`` as its first manager and ``members`` ((username, role) pairs,
    checked as :func:`member_add` does) besides; nothing is created if any is refused.

    Needs the right to change the layer's dataset (its owner). The selection and the order are
    fixed for the campaign's life (stored with their seed, so they can be reproduced). The
    filter selection without bounds takes the layer's stored filter (``detections.filters``).
    """
    if not Dataset.objects.allows(user, "change", layer.dataset):
        raise NotAllowed(
            "Creating a proofreading campaign needs the right to change the dataset (its owner)."
        )
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(
            f"Layer {layer.name!r} is a {layer.kind} layer; proofreading needs a segmentation."
        )
    if (
        settings.selection == Selection.FILTER
        and settings.volume_min is None
        and settings.volume_max is None
        and settings.sphericity_min is None
    ):
        stored = layer_filter_values(layer)
        settings = replace(
            settings,
            volume_min=stored.volume_min,
            volume_max=stored.volume_max,
            sphericity_min=stored.sphericity_min,
        )
    _check_settings(settings)
    classes = (
        verdict_set_parse(settings.verdict_set)
        if settings.verdict_set is not None
        else verdict_classes(default_verdict_set())
    )
    seed = settings.seed if settings.seed is not None else secrets.randbits(62)
    volume_min = _optional_number("volume_min", settings.volume_min)
    sphericity_min = _optional_number("sphericity_min", settings.sphericity_min)
    volume_max = _optional_number("volume_max", settings.volume_max)

    candidates = _candidates(layer, volume_min, sphericity_min, volume_max)
    if len(candidates) == 0:
        if not Detection.objects.filter(layer_id=layer.id).exists():
            raise InvalidRequest(
                f"Layer {layer.name!r} has no detections table yet (or no objects); build it first."
            )
        raise InvalidRequest("The filter selects no detection; relax volume_min/sphericity_min.")
    params: dict[str, Any] = {}
    if volume_min is not None:
        params["volume_min"] = volume_min
    if sphericity_min is not None:
        params["sphericity_min"] = sphericity_min
    if volume_max is not None:
        params["volume_max"] = volume_max
    if settings.selection == Selection.SAMPLE:
        assert settings.sample_size is not None
        population = len(candidates)
        candidates = candidates.take(sample_indices(population, settings.sample_size, seed))
        params.update(sample_size=settings.sample_size, population=population, seed=seed)
    keys = queue_keys(
        candidates,
        settings.order,
        seed,
        volume_min=volume_min if settings.selection != Selection.ALL else None,
        sphericity_min=sphericity_min if settings.selection != Selection.ALL else None,
    )
    with transaction.atomic():
        campaign = ProofreadingCampaign.objects.create(
            layer=layer,
            name=settings.name.strip(),
            description=settings.description,
            created_by=user,
            selection=settings.selection,
            selection_params=params,
            verdict_set=verdict_set_json(classes),
            reviewers_per_item=settings.reviewers_per_item,
            consensus_rule=settings.consensus_rule,
            order=settings.order,
            order_seed=seed,
            claim_seconds=settings.claim_seconds,
            n_items=len(candidates),
            geometry=_geometry(layer, int(candidates.ids[0])),
        )
        CampaignMember.objects.create(
            campaign=campaign, user=user, role=Role.MANAGER, added_by=user
        )
        _items_insert(campaign, candidates, keys)
        for username, role in members:
            if (username, role) != (user.username, Role.MANAGER):
                member_add(campaign, user, username, role)
    return campaign


def campaign_update(
    campaign: ProofreadingCampaign,
    user: User,
    *,
    name: str | None = None,
    description: str | None = None,
    state: str | None = None,
    claim_seconds: int | None = None,
    verdict_set: Any = None,
) -> ProofreadingCampaign:
    """Change a campaign's name, description, state (closing releases every claim), claim time
    or the labels, colours and keys of its verdicts (managers). The verdict names and kinds,
    the selection, N and the order are fixed once items exist: changing them would change what
    earlier verdicts mean."""
    _require_manager(campaign, user)
    fields = []
    if name is not None:
        if not name.strip():
            raise InvalidRequest("name must not be empty.")
        campaign.name = name.strip()
        fields.append("name")
    if description is not None:
        campaign.description = description
        fields.append("description")
    if claim_seconds is not None:
        if not MIN_CLAIM_SECONDS <= claim_seconds <= MAX_CLAIM_SECONDS:
            raise InvalidRequest(
                f"claim_seconds must be between {MIN_CLAIM_SECONDS} and {MAX_CLAIM_SECONDS}."
            )
        campaign.claim_seconds = claim_seconds
        fields.append("claim_seconds")
    if verdict_set is not None:
        classes = verdict_set_parse(verdict_set)
        old = [(c.name, c.kind) for c in verdict_classes(campaign.verdict_set)]
        if sorted((c.name, c.kind) for c in classes) != sorted(old):
            raise Conflict(
                "The verdict names and kinds are fixed once the campaign exists (earlier "
                "verdicts use them); only labels, colours and keys can change."
            )
        campaign.verdict_set = verdict_set_json(classes)
        fields.append("verdict_set")
    with transaction.atomic():
        if state is not None:
            if state not in CampaignState.values:
                raise InvalidRequest(f"state must be one of {', '.join(CampaignState.values)}.")
            campaign.state = state
            fields.append("state")
            if state == CampaignState.CLOSED:
                Claim.objects.filter(campaign=campaign).delete()
        if fields:
            campaign.save(update_fields=[*fields, "updated"])
    return campaign


def campaign_delete(campaign: ProofreadingCampaign, user: User) -> None:
    """Delete a campaign that has no verdicts yet (managers); one with verdicts is closed
    instead, so that the record of the work stays."""
    _require_manager(campaign, user)
    if Verdict.objects.filter(campaign=campaign).exists():
        raise Conflict("The campaign has verdicts and is kept; close it instead.")
    campaign.delete()


# --- members ------------------------------------------------------------------------------------


def member_add(
    campaign: ProofreadingCampaign, actor: User, username: str, role: str
) -> CampaignMember:
    """Give ``username`` a role in the campaign (managers). The user must be able to see the
    dataset (its data is what they review): share it with them first otherwise."""
    _require_manager(campaign, actor)
    if role not in Role.values:
        raise InvalidRequest(f"role must be one of {', '.join(Role.values)}.")
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidRequest(f"No user named {username[:150]!r}.")
    if not Dataset.objects.allows(user, "view", campaign.layer.dataset):
        raise InvalidRequest(
            f"{user.username} cannot see dataset {campaign.layer.dataset.slug!r}; share it with "
            "them (their team, or make it public) before adding them."
        )
    if CampaignMember.objects.filter(campaign=campaign, user=user, role=role).exists():
        raise Conflict(f"{user.username} is already a {role} of this campaign.")
    return CampaignMember.objects.create(campaign=campaign, user=user, role=role, added_by=actor)


def member_remove(member: CampaignMember, actor: User) -> None:
    """Take a role away (managers); the campaign keeps at least one manager. A reviewer's or
    expert's claims are released; their verdicts stay."""
    campaign = member.campaign
    _require_manager(campaign, actor)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        if (
            member.role == Role.MANAGER
            and CampaignMember.objects.filter(campaign=campaign, role=Role.MANAGER).count() <= 1
        ):
            raise Conflict("A campaign keeps at least one manager; add another one first.")
        round_ = {Role.REVIEWER: FIRST_ROUND, Role.EXPERT: SECOND_ROUND}.get(Role(member.role))
        if round_ is not None:
            Claim.objects.filter(campaign=campaign, reviewer=member.user, round=round_).delete()
        member.delete()


# --- the queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handout:
    """An item handed to a reviewer: it is theirs for this round until ``claim.expires_at``."""

    item: CampaignItem
    claim: Claim


def _live_claims_of_others(round_: int, user: User, now: datetime) -> Any:
    claims = (
        Claim.objects.filter(item=OuterRef("pk"), round=round_, expires_at__gt=now)
        .exclude(reviewer=user)
        .order_by()
        .values("item")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(claims, output_field=IntegerField()), Value(0))


def _candidate_items(
    campaign: ProofreadingCampaign,
    user: User,
    round_: int,
    now: datetime,
    exclude: Sequence[int],
    skipped: bool,
) -> QuerySet[CampaignItem]:
    my_verdict = Verdict.objects.filter(
        item=OuterRef("pk"), reviewer=user, round=round_, undone_at__isnull=True
    )
    my_skip = ReviewEvent.objects.filter(
        item=OuterRef("pk"), actor=user, round=round_, action=EventAction.SKIP
    )
    queryset = (
        CampaignItem.objects.filter(
            detection_exists(), campaign=campaign, status=_round_status(round_)
        )
        .exclude(id__in=list(exclude))
        .annotate(others=_live_claims_of_others(round_, user, now))
        .filter(~Exists(my_verdict), Exists(my_skip) if skipped else ~Exists(my_skip))
    )
    if round_ == FIRST_ROUND:
        queryset = queryset.filter(others__lt=campaign.reviewers_per_item - F("first_round_count"))
    else:
        queryset = queryset.filter(others=0)
    return queryset.order_by("queue_key")


def items_next(
    campaign: ProofreadingCampaign, user: User, *, count: int = 1, round_: int = FIRST_ROUND
) -> list[Handout]:
    """The next ``count`` items of ``user``'s queue for ``round_``, handed out to them.

    Items the reviewer already holds come first (asking again returns the same items, with
    their claims extended), then new ones in queue order, each only while its live verdicts
    and claims number fewer than N (one in the second round) and never one the reviewer
    already decided. Fewer (or none) when the queue is running out.
    """
    _require_open(campaign)
    _require_round_role(campaign, user, round_)
    if not 1 <= count <= MAX_PREFETCH:
        raise InvalidRequest(f"count must be between 1 and {MAX_PREFETCH}.")
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        held_ids = list(
            Claim.objects.filter(campaign=campaign, reviewer=user, round=round_).values_list(
                "item_id", flat=True
            )
        )
        # Lock the items first: a claim that expired meanwhile may have lost its place.
        list(CampaignItem.objects.select_for_update().filter(id__in=held_ids).order_by("id"))
        now = timezone.now()
        expires = now + timedelta(seconds=campaign.claim_seconds)
        status = _round_status(round_)
        kept = Claim.objects.filter(
            campaign=campaign,
            reviewer=user,
            round=round_,
            expires_at__gt=now,
            item__status=status,
        )
        Claim.objects.filter(campaign=campaign, reviewer=user, round=round_).exclude(
            id__in=kept.values("id")
        ).delete()
        kept.update(expires_at=expires)
        handouts = [
            Handout(claim.item, claim)
            for claim in Claim.objects.filter(campaign=campaign, reviewer=user, round=round_)
            .select_related("item__detection")
            .order_by("item__queue_key")
        ]
        need = count - len(handouts)
        if need > 0:
            handouts += _claim_more(campaign, user, round_, need, [h.item.id for h in handouts])
    return handouts[:count]


def _claim_more(
    campaign: ProofreadingCampaign, user: User, round_: int, need: int, held: list[int]
) -> list[Handout]:
    """Lock candidates (skipping items other transactions hold), recount each under its lock,
    and claim those with a place left."""
    examined = list(held)
    handouts: list[Handout] = []
    capacity = _capacity(campaign, round_)
    for skipped in (False, True):
        for _ in range(8):  # bounded: each pass examines new items
            if len(handouts) >= need:
                return handouts
            batch = need - len(handouts) + 4
            candidates = list(
                _candidate_items(campaign, user, round_, timezone.now(), examined, skipped)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("detection")[:batch]
            )
            if not candidates:
                break
            now = timezone.now()  # after the locks: see the module docstring
            expires = now + timedelta(seconds=campaign.claim_seconds)
            for item in candidates:
                examined.append(item.id)
                if len(handouts) >= need:
                    break
                if item.status != _round_status(round_) or _has_live_verdict(item, user, round_):
                    continue
                if _places_taken(item, round_, user, now) >= capacity:
                    continue
                claim, _ = Claim.objects.update_or_create(
                    item=item,
                    reviewer=user,
                    round=round_,
                    defaults={"campaign": campaign, "handed_out": now, "expires_at": expires},
                )
                handouts.append(Handout(item, claim))
    return handouts


# --- verdicts -----------------------------------------------------------------------------------


# Actions that move a reviewer from one item to the next (a flag does not).
_TRANSITIONS = (EventAction.CREATE, EventAction.CHANGE, EventAction.UNDO, EventAction.SKIP)


def _seconds_for(
    campaign: ProofreadingCampaign, user: User, claim: Claim | None, now: datetime
) -> float | None:
    if claim is None:
        return None
    start = claim.handed_out
    last = (
        ReviewEvent.objects.filter(campaign=campaign, actor=user, action__in=_TRANSITIONS)
        .order_by("-created")
        .values_list("created", flat=True)
        .first()
    )
    if last is not None and last > start:
        start = last
    return max((now - start).total_seconds(), 0.0)


def _check_round_state(item: CampaignItem, round_: int, campaign: ProofreadingCampaign) -> None:
    if round_ == FIRST_ROUND and item.status != ItemStatus.PENDING:
        raise Conflict(
            f"Segment {item.segment_id} already has its {campaign.reviewers_per_item} "
            "first-round verdict(s)."
        )
    if round_ == SECOND_ROUND and item.status != ItemStatus.SECOND_ROUND:
        if item.status == ItemStatus.DECIDED and item.verdict_source == "expert":
            raise Conflict(f"Segment {item.segment_id} was already settled by an expert.")
        raise Conflict(
            f"Segment {item.segment_id} is not in the second round ({item.reason or item.status})."
        )


def verdict_create(
    campaign: ProofreadingCampaign,
    user: User,
    item_id: int,
    verdict: str,
    *,
    round_: int = FIRST_ROUND,
) -> Verdict:
    """Record ``user``'s verdict on an item of the campaign in ``round_``.

    400: an unknown verdict name or an item outside the campaign; 403: not a reviewer (round 1)
    or expert (round 2); 409: the campaign is closed, the reviewer already gave a verdict in
    this round (change or undo it instead), the item has its N verdicts (or claims) from
    others, it is not in this round, or its detection vanished from the layer.
    """
    _require_open(campaign)
    _require_round_role(campaign, user, round_)
    name = _verdict_name(campaign, verdict)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        return _verdict_record(campaign, user, _lock_item(campaign, item_id), name, round_)


def _verdict_record(
    campaign: ProofreadingCampaign, user: User, item: CampaignItem, name: str, round_: int
) -> Verdict:
    """The verdict, under the item's lock (see :func:`verdict_create` for the refusals)."""
    now = timezone.now()
    mine = _has_live_verdict(item, user, round_)
    if mine is not None:
        raise Conflict(
            f"You already gave verdict {mine.verdict!r} (id {mine.id}) on segment "
            f"{item.segment_id} in round {round_}; change or undo it instead."
        )
    if item.detection is None:
        raise Conflict(f"Segment {item.segment_id} is no longer in the layer's detections.")
    _check_round_state(item, round_, campaign)
    if _places_taken(item, round_, user, now) >= _capacity(campaign, round_):
        raise Conflict(
            f"Segment {item.segment_id} is already with {_capacity(campaign, round_)} "
            "other reviewer(s) in this round; ask for the next one."
        )
    claim = Claim.objects.filter(item=item, reviewer=user, round=round_).first()
    seconds = _seconds_for(campaign, user, claim, now)
    created = Verdict.objects.create(
        campaign=campaign,
        item=item,
        reviewer=user,
        round=round_,
        verdict=name,
        seconds=seconds,
        updated=now,
    )
    if claim is not None:
        claim.delete()
    _event(campaign, item, user, EventAction.CREATE, round_, verdict=created, after=name)
    item_recompute(campaign, item)
    return created


def verdicts_create_bulk(
    campaign: ProofreadingCampaign,
    user: User,
    item_ids: Sequence[int],
    verdict: str,
    *,
    round_: int = FIRST_ROUND,
) -> list[Verdict]:
    """One verdict on several items (a gallery's selection): all or none, in one transaction,
    with the same checks as :func:`verdict_create` per item (the first refusal is the answer)."""
    if not item_ids:
        raise InvalidRequest("items must name at least one item.")
    if len(set(item_ids)) != len(item_ids):
        raise InvalidRequest("items must not repeat an item.")
    _require_open(campaign)
    _require_round_role(campaign, user, round_)
    name = _verdict_name(campaign, verdict)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        # Lock in id order, so that two bulk verdicts on overlapping items cannot deadlock.
        locked = {
            item.id: item
            for item in CampaignItem.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, id__in=list(item_ids))
            .select_related("detection")
            .order_by("id")
        }
        missing = [i for i in item_ids if i not in locked]
        if missing:
            raise InvalidRequest(f"Item {missing[0]} is not part of campaign {campaign.id}.")
        return [_verdict_record(campaign, user, locked[i], name, round_) for i in item_ids]


def _own_live_verdict(campaign: ProofreadingCampaign, user: User, verdict_id: int) -> Verdict:
    verdict = Verdict.objects.filter(campaign=campaign, id=verdict_id).first()
    if verdict is None:
        raise NotFound(f"Campaign {campaign.id} has no verdict {verdict_id}.")
    if verdict.reviewer_id != user.id:
        raise NotAllowed("You can change or undo only your own verdicts.")
    return verdict


def verdict_change(verdict: Verdict, user: User, new_verdict: str) -> Verdict:
    """Change one's own live verdict (kept in the history with before and after)."""
    campaign = verdict.campaign
    _require_open(campaign)
    if verdict.reviewer_id != user.id:
        raise NotAllowed("You can change only your own verdicts.")
    _require_round_role(campaign, user, verdict.round)
    name = _verdict_name(campaign, new_verdict)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        item = _lock_item(campaign, verdict.item_id)
        verdict.refresh_from_db()
        if verdict.undone_at is not None:
            raise Conflict(f"Verdict {verdict.id} was undone; give a new verdict instead.")
        if verdict.verdict == name:
            return verdict
        before = verdict.verdict
        verdict.verdict = name
        verdict.updated = timezone.now()
        verdict.save(update_fields=["verdict", "updated"])
        _event(
            campaign,
            item,
            user,
            EventAction.CHANGE,
            verdict.round,
            verdict=verdict,
            before=before,
            after=name,
        )
        item_recompute(campaign, item)
    return verdict


@dataclass(frozen=True)
class UndoResult:
    verdict: Verdict  # now undone
    handout: Handout | None  # the item, handed back to the reviewer


def verdict_undo(campaign: ProofreadingCampaign, user: User, verdict_id: int) -> UndoResult:
    """Undo ``user``'s last verdict in the campaign (the one given or changed last); the item is
    handed back to them. Undoing again undoes the one before, like Ctrl+Z.

    409 ("stale undo") when ``verdict_id`` is not the reviewer's last live verdict any more (a
    newer one exists) or was already undone: the page's idea of "last" is out of date.
    """
    _require_open(campaign)
    verdict = _own_live_verdict(campaign, user, verdict_id)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        item = _lock_item(campaign, verdict.item_id)
        verdict.refresh_from_db()
        if verdict.undone_at is not None:
            raise Conflict(f"Stale undo: verdict {verdict.id} was already undone.")
        last = (
            Verdict.objects.filter(campaign=campaign, reviewer=user, undone_at__isnull=True)
            .order_by("-updated", "-id")
            .first()
        )
        if last is None or last.id != verdict.id:
            raise Conflict(
                f"Stale undo: verdict {verdict.id} is not your last verdict any more"
                + (f" (your last is {last.id})." if last is not None else ".")
            )
        now = timezone.now()
        verdict.undone_at = now
        verdict.save(update_fields=["undone_at"])
        _event(
            campaign,
            item,
            user,
            EventAction.UNDO,
            verdict.round,
            verdict=verdict,
            before=verdict.verdict,
        )
        item_recompute(campaign, item)
        handout = None
        # The reviewer's place is the one the verdict held: swapping it for a claim keeps the
        # item's count, so no capacity check is needed.
        if item.status == _round_status(verdict.round) and item.detection is not None:
            claim, _ = Claim.objects.update_or_create(
                item=item,
                reviewer=user,
                round=verdict.round,
                defaults={
                    "campaign": campaign,
                    "handed_out": now,
                    "expires_at": now + timedelta(seconds=campaign.claim_seconds),
                },
            )
            handout = Handout(item, claim)
    return UndoResult(verdict, handout)


# --- skips, flags, missed objects ---------------------------------------------------------------


def item_skip(
    campaign: ProofreadingCampaign, user: User, item_id: int, *, round_: int = FIRST_ROUND
) -> ReviewEvent:
    """Skip an item: the reviewer's claim is released and the item comes back to them only
    when nothing else is left in their queue."""
    _require_open(campaign)
    _require_round_role(campaign, user, round_)
    with transaction.atomic():
        _serialise_on_sqlite(campaign)
        item = _lock_item(campaign, item_id)
        mine = _has_live_verdict(item, user, round_)
        if mine is not None:
            raise Conflict(
                f"You already gave a verdict on segment {item.segment_id}; undo it to skip."
            )
        Claim.objects.filter(item=item, reviewer=user, round=round_).delete()
        return _event(campaign, item, user, EventAction.SKIP, round_)


def item_flag(
    campaign: ProofreadingCampaign,
    user: User,
    item_id: int,
    reason: str,
    *,
    round_: int = FIRST_ROUND,
) -> ReviewEvent:
    """Flag an item for the managers with a reason (e.g. "two nuclei merged"); it changes
    nothing in the queue: the reviewer still gives a verdict or skips."""
    _require_open(campaign)
    _require_round_role(campaign, user, round_)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidRequest(f"A flag needs a reason of 1 to {MAX_REASON} characters.")
    with transaction.atomic():
        item = CampaignItem.objects.filter(campaign=campaign, id=item_id).first()
        if item is None:
            raise InvalidRequest(f"Item {item_id} is not part of campaign {campaign.id}.")
        return _event(campaign, item, user, EventAction.FLAG, round_, reason=reason)


def _position(name: str, value: Any, extent: int | None) -> float:
    number = _optional_number(name, value)
    if number is None:
        raise InvalidRequest(f"{name} is required (a voxel position).")
    if abs(number) >= MAX_POSITION:
        raise InvalidRequest(f"{name} must lie within +-2^31 voxels.")
    if extent is not None and not -0.5 <= number < extent - 0.5:
        raise InvalidRequest(f"{name} = {number} lies outside the layer (0 to {extent - 1}).")
    return number


def _spatial_extent(layer: Layer) -> list[int | None]:
    """The layer's size along z, y, x, where its metadata says it."""
    try:
        sizes = dict(zip(layer.axes, layer.shape, strict=True))
        return [int(sizes[a]) if a in sizes else None for a in "zyx"]
    except (TypeError, ValueError):
        return [None, None, None]


def missed_object_add(
    campaign: ProofreadingCampaign, user: User, z: Any, y: Any, x: Any, note: str = ""
) -> MissedObject:
    """A point on an object the segmentation missed (reviewers and experts), in voxels of the
    layer at full resolution; it must lie inside the layer."""
    _require_open(campaign)
    _require_role(
        campaign,
        user,
        (Role.REVIEWER, Role.EXPERT),
        "Only the campaign's reviewers and experts mark missed objects.",
    )
    extent = _spatial_extent(campaign.layer)
    position = [_position(n, v, e) for n, v, e in zip("zyx", (z, y, x), extent, strict=True)]
    if len(note) > MAX_REASON:
        raise InvalidRequest(f"note must be at most {MAX_REASON} characters.")
    return MissedObject.objects.create(
        campaign=campaign,
        created_by=user,
        z=position[0],
        y=position[1],
        x=position[2],
        note=note.strip(),
    )


def missed_object_delete(missed: MissedObject, user: User) -> None:
    """Remove a missed-object point: whoever dropped it, or a manager."""
    campaign = missed.campaign
    if missed.created_by_id != user.id:
        _require_role(
            campaign,
            user,
            (Role.MANAGER,),
            "Only whoever marked the point, or a manager, can remove it.",
        )
    missed.delete()
