"""Reads of the proofreading app: campaigns a user may see, items with the verdicts the caller
may see, the verdicts as a table for ``pipeline.agreement``, agreement, dashboard, exports.

Who sees what: a reviewer sees only their own verdicts (the first round stays independent);
managers and experts ("report" on the campaign) see every verdict, the consensus, the history,
the flags and the reports. Statistics are ``pipeline.agreement``'s, never recomputed here.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet

from pipeline.agreement import agreement_report, reviewer_agreement_with_consensus
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.users import AnyUser
from webapp.detections.selectors import ExtraColumn, export_batches
from webapp.proofreading.models import (
    FIRST_ROUND,
    SECOND_ROUND,
    CampaignItem,
    CampaignMember,
    EventAction,
    ItemStatus,
    MissedObject,
    ProofreadingCampaign,
    ReviewEvent,
    Verdict,
    detection_exists,
)
from webapp.proofreading.verdict_sets import uncertain_names, verdict_classes

REPORT = "report"


def campaigns_visible(user: AnyUser) -> QuerySet[ProofreadingCampaign]:
    """The campaigns ``user`` is a member of (every campaign for superusers), each with the
    caller's own memberships (``my_memberships``)."""
    mine = CampaignMember.objects.filter(user_id=int(user.pk or 0)).order_by("role")
    return (
        ProofreadingCampaign.objects.restrict(user, "view")
        .select_related("layer__dataset", "created_by")
        .prefetch_related(Prefetch("members", queryset=mine, to_attr="my_memberships"))
    )


def may_report(campaign: ProofreadingCampaign, user: AnyUser) -> bool:
    return ProofreadingCampaign.objects.allows(user, REPORT, campaign)


def members_of(campaign: ProofreadingCampaign) -> QuerySet[CampaignMember]:
    return CampaignMember.objects.filter(campaign=campaign).select_related("user", "added_by")


# --- items --------------------------------------------------------------------------------------


def items_of(
    campaign: ProofreadingCampaign,
    user: AnyUser,
    *,
    status: str | None = None,
    verdict: str | None = None,
    decided_by_me: bool | None = None,
) -> QuerySet[CampaignItem]:
    """The campaign's items in queue order, each with the caller's own live verdicts
    (``mine``) and, for managers and experts, every live verdict (``live_verdicts``).

    ``status`` and ``verdict`` (the final one) filter for managers and experts only, since
    they reveal other reviewers' verdicts; ``decided_by_me`` filters anyone's own.
    """
    reports = may_report(campaign, user)
    queryset = CampaignItem.objects.filter(campaign=campaign).select_related("detection")
    if status is not None or verdict is not None:
        if not reports:
            raise InvalidRequest("Only managers and experts can filter by status or verdict.")
        if status is not None:
            if status not in ItemStatus.values:
                raise InvalidRequest(f"status must be one of {', '.join(ItemStatus.values)}.")
            queryset = queryset.filter(status=status)
        if verdict is not None:
            queryset = queryset.filter(verdict=verdict)
    own = Verdict.objects.filter(reviewer_id=user.pk, undone_at__isnull=True).order_by("round")
    if decided_by_me is not None:
        mine = Exists(own.filter(item=OuterRef("pk")))
        queryset = queryset.filter(mine if decided_by_me else ~mine)
    prefetches: list[Prefetch[Any]] = [Prefetch("verdicts", queryset=own, to_attr="mine")]
    if reports:
        everyone = (
            Verdict.objects.filter(undone_at__isnull=True)
            .select_related("reviewer")
            .order_by("round", "created", "id")
        )
        prefetches.append(Prefetch("verdicts", queryset=everyone, to_attr="live_verdicts"))
    return queryset.prefetch_related(*prefetches).order_by("queue_key")


def second_round_waiting(campaign_ids: Sequence[int]) -> dict[int, int]:
    """Per campaign, how many items wait for an expert (routed to the second round, detection
    still in the layer): the count the list and queue pages show experts. One query."""
    if not campaign_ids:
        return {}
    rows = (
        CampaignItem.objects.filter(
            detection_exists(), campaign_id__in=list(campaign_ids), status=ItemStatus.SECOND_ROUND
        )
        .order_by()
        .values("campaign_id")
        .annotate(n=Count("id"))
        .values_list("campaign_id", "n")
    )
    return {int(c): int(n) for c, n in rows}


def item_of(campaign: ProofreadingCampaign, user: AnyUser, item_id: int) -> CampaignItem:
    item = items_of(campaign, user).filter(id=item_id).first()
    if item is None:
        raise NotFound(f"Campaign {campaign.id} has no item {item_id}.")
    return item


def verdicts_visible(
    campaign: ProofreadingCampaign,
    user: AnyUser,
    *,
    round_: int | None = None,
    include_undone: bool = False,
) -> QuerySet[Verdict]:
    """Verdicts the caller may see: their own, or all for managers and experts."""
    queryset = Verdict.objects.filter(campaign=campaign).select_related("reviewer", "item")
    if not may_report(campaign, user):
        queryset = queryset.filter(reviewer_id=user.pk)
    if round_ is not None:
        queryset = queryset.filter(round=round_)
    if not include_undone:
        queryset = queryset.filter(undone_at__isnull=True)
    return queryset.order_by("created", "id")


def events_visible(campaign: ProofreadingCampaign, user: AnyUser) -> QuerySet[ReviewEvent]:
    """The history: the caller's own actions, or everyone's for managers and experts."""
    queryset = ReviewEvent.objects.filter(campaign=campaign).select_related("actor", "item")
    if not may_report(campaign, user):
        queryset = queryset.filter(actor_id=user.pk)
    return queryset.order_by("created", "id")


def flags_of(campaign: ProofreadingCampaign, user: AnyUser) -> QuerySet[ReviewEvent]:
    return events_visible(campaign, user).filter(action=EventAction.FLAG)


def missed_objects_of(campaign: ProofreadingCampaign) -> QuerySet[MissedObject]:
    return MissedObject.objects.filter(campaign=campaign).select_related("created_by")


# --- verdict tables and statistics --------------------------------------------------------------


def verdict_frame(campaign: ProofreadingCampaign) -> pd.DataFrame:
    """The campaign's live verdicts as ``pipeline.agreement`` reads them: ``detection_id`` (the
    item's id), ``reviewer`` (username), ``verdict``, ``round``, ``decided_at``, ``seconds``."""
    rows = list(
        Verdict.objects.filter(campaign=campaign, undone_at__isnull=True)
        .order_by("updated", "id")
        .values_list("item_id", "reviewer__username", "verdict", "round", "updated", "seconds")
    )
    columns = ["detection_id", "reviewer", "verdict", "round", "decided_at", "seconds"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    return frame.astype({"detection_id": "int64", "round": "int64", "seconds": "float64"})


def _number(value: Any) -> float | None:
    """A statistic as JSON takes it: NaN (undefined) is null."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def agreement_summary(campaign: ProofreadingCampaign) -> dict[str, Any]:
    """Cohen's kappa per reviewer pair, Fleiss' kappa, percent agreement and consensus counts
    (``pipeline.agreement.agreement_report`` on the live verdicts; undefined values are null)."""
    classes = verdict_classes(campaign.verdict_set)
    frame = verdict_frame(campaign)
    report = agreement_report(
        frame[["detection_id", "reviewer", "verdict", "round", "decided_at"]],
        quorum=campaign.reviewers_per_item,
        rule="majority" if campaign.consensus_rule == "majority" else "unanimous",
        uncertain=uncertain_names(campaign.verdict_set),
        labels=[c.name for c in classes],
    )
    status_counts = item_status_counts(campaign)
    return {
        "reviewers_per_item": campaign.reviewers_per_item,
        "consensus_rule": campaign.consensus_rule,
        "items": campaign.n_items,
        "status_counts": status_counts,
        "verdict_counts": report.verdict_counts,
        "fleiss": {
            "kappa": _number(report.fleiss.kappa),
            "n_raters": report.fleiss.n_raters,
            "n_detections": report.fleiss.n_detections,
            "n_excluded": report.fleiss.n_excluded,
            "categories": report.fleiss.categories,
        },
        "percent_agreement": {
            "pairwise": _number(report.percent.pairwise),
            "unanimous": _number(report.percent.unanimous),
            "n_detections": report.percent.n_detections,
        },
        "pairs": [
            {
                "reviewer_a": str(row.reviewer_a),
                "reviewer_b": str(row.reviewer_b),
                "n_common": int(row.n_common),
                "percent_agreement": _number(row.percent_agreement),
                "kappa": _number(row.kappa),
            }
            for row in report.pairs.itertuples(index=False)
        ],
    }


def item_status_counts(campaign: ProofreadingCampaign) -> dict[str, int]:
    counts = dict(
        CampaignItem.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status: int(counts.get(status, 0)) for status in ItemStatus.values}


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(finite)) if finite else None


def dashboard(campaign: ProofreadingCampaign) -> dict[str, Any]:
    """Progress and per-reviewer figures for the managers' dashboard.

    ``decided`` counts items with a final verdict; ``by_verdict`` the final verdicts;
    ``by_round`` the live verdicts given in each round. Per reviewer: decisions per round,
    median seconds per decision (server-measured, decisions with a time only), agreement with
    the consensus (``pipeline.agreement.reviewer_agreement_with_consensus``: the share of their
    first-round verdicts on decided items equal to the final verdict), skips and flags.
    """
    status_counts = item_status_counts(campaign)
    frame = verdict_frame(campaign)
    decided = dict(
        CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED)
        .values_list("verdict")
        .annotate(n=Count("id"))
        .values_list("verdict", "n")
    )
    sources = dict(
        CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED)
        .values_list("verdict_source")
        .annotate(n=Count("id"))
        .values_list("verdict_source", "n")
    )
    consensus = pd.DataFrame.from_records(
        list(
            CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED).values_list(
                "id", "status", "verdict"
            )
        ),
        columns=["detection_id", "status", "verdict"],
    ).astype({"detection_id": "int64"})
    agreement = reviewer_agreement_with_consensus(
        frame[["detection_id", "reviewer", "verdict", "round"]], consensus
    ).set_index("reviewer")
    actions: Counter[tuple[str, str]] = Counter(
        (username, action)
        for username, action in ReviewEvent.objects.filter(
            campaign=campaign, action__in=[EventAction.SKIP, EventAction.FLAG]
        ).values_list("actor__username", "action")
    )
    roles: dict[str, list[str]] = defaultdict(list)
    for username, role in members_of(campaign).values_list("user__username", "role"):
        roles[username].append(role)
    names = sorted(set(roles) | set(frame["reviewer"]) | {u for u, _ in actions})
    reviewers = []
    for name in names:
        own = frame.loc[frame["reviewer"] == name]
        first = own.loc[own["round"] == FIRST_ROUND]
        row = agreement.loc[name] if name in agreement.index else None
        reviewers.append(
            {
                "reviewer": name,
                "roles": sorted(roles.get(name, [])),
                "decisions": len(own),
                "decisions_round1": len(first),
                "decisions_round2": int((own["round"] == SECOND_ROUND).sum()),
                "median_seconds": _median(own["seconds"].tolist()),
                "agreement_with_consensus": (
                    _number(row["agreement_with_consensus"]) if row is not None else None
                ),
                "n_with_consensus": int(row["n_with_consensus"]) if row is not None else 0,
                "skips": actions[(name, EventAction.SKIP)],
                "flags": actions[(name, EventAction.FLAG)],
            }
        )
    total = campaign.n_items
    n_decided = status_counts[ItemStatus.DECIDED]
    return {
        "total": total,
        "decided": n_decided,
        "progress": n_decided / total if total else None,
        "status_counts": status_counts,
        "by_verdict": {
            c.name: int(decided.get(c.name, 0)) for c in verdict_classes(campaign.verdict_set)
        },
        "by_round": {
            "1": int((frame["round"] == FIRST_ROUND).sum()),
            "2": int((frame["round"] == SECOND_ROUND).sum()),
        },
        "decided_by": {
            "first_round": int(sources.get("first_round", 0)),
            "expert": int(sources.get("expert", 0)),
        },
        "missed_objects": MissedObject.objects.filter(campaign=campaign).count(),
        "reviewers": reviewers,
    }


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def dashboard_csv(campaign: ProofreadingCampaign) -> str:
    """The dashboard as a long table: ``section, name, reviewer, value`` (one figure a row,
    so that any spreadsheet or pandas reads it without knowing the verdict set)."""
    data = dashboard(campaign)
    rows: list[list[Any]] = [["section", "name", "reviewer", "value"]]
    rows.append(["progress", "total", "", data["total"]])
    rows.append(["progress", "decided", "", data["decided"]])
    for status, n in data["status_counts"].items():
        rows.append(["status", status, "", n])
    for name, n in data["by_verdict"].items():
        rows.append(["verdict", name, "", n])
    for round_, n in data["by_round"].items():
        rows.append(["round", round_, "", n])
    for source, n in data["decided_by"].items():
        rows.append(["decided_by", source, "", n])
    rows.append(["missed_objects", "count", "", data["missed_objects"]])
    for reviewer in data["reviewers"]:
        for key in (
            "decisions",
            "decisions_round1",
            "decisions_round2",
            "median_seconds",
            "agreement_with_consensus",
            "n_with_consensus",
            "skips",
            "flags",
        ):
            value = reviewer[key]
            rows.append(["reviewer", key, reviewer["reviewer"], "" if value is None else value])
    return _csv_text(rows)


# --- missed objects -----------------------------------------------------------------------------

MISSED_COLUMNS = ["id", "z", "y", "x", "z_um", "y_um", "x_um", "note", "created_by", "created"]


def missed_objects_csv(campaign: ProofreadingCampaign) -> str:
    """The missed-object points: voxel positions of the layer (z y x) and the same in um
    (empty when the layer's voxel size is unknown), ready to seed ground truth."""
    geometry = campaign.geometry or {}
    size = geometry.get("voxel_size_um")
    origin = geometry.get("origin_um") or [0.0, 0.0, 0.0]
    rows: list[list[Any]] = [MISSED_COLUMNS]
    for point in missed_objects_of(campaign).order_by("id"):
        voxels = [point.z, point.y, point.x]
        um: list[Any] = (
            [round(o + v * s, 6) for v, o, s in zip(voxels, origin, size, strict=True)]
            if size
            else ["", "", ""]
        )
        rows.append(
            [
                point.id,
                *voxels,
                *um,
                point.note,
                point.created_by.username,
                point.created.isoformat(),
            ]
        )
    return _csv_text(rows)


# --- detections with verdicts (exports) ---------------------------------------------------------


@dataclass
class _VerdictColumns:
    """The verdict columns of one export batch, read in one query per batch and shared by the
    extra columns that ask for them (``ExtraColumn`` asks per column)."""

    campaign: ProofreadingCampaign
    _ids: tuple[int, ...] = ()
    _rows: dict[str, list[Any]] | None = None

    def column(self, name: str, ids: Sequence[int]) -> list[Any]:
        if self._rows is None or tuple(ids) != self._ids:
            self._load(ids)
        assert self._rows is not None
        return self._rows[name]

    def _load(self, ids: Sequence[int]) -> None:
        items = {
            detection_id: (item_id, status, verdict, source)
            for item_id, detection_id, status, verdict, source in CampaignItem.objects.filter(
                campaign=self.campaign, detection_id__in=list(ids)
            ).values_list("id", "detection_id", "status", "verdict", "verdict_source")
        }
        by_item: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
        for item_id, round_, username, verdict in (
            Verdict.objects.filter(
                campaign=self.campaign,
                undone_at__isnull=True,
                item_id__in=[v[0] for v in items.values()],
            )
            .order_by("round", "reviewer__username")
            .values_list("item_id", "round", "reviewer__username", "verdict")
        ):
            by_item[item_id].append((round_, username, verdict))
        rows: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMN_NAMES}
        for detection_id in ids:
            found = items.get(detection_id)
            if found is None:  # not in the campaign (exports are restricted to it)
                for values in rows.values():
                    values.append(None)
                continue
            item_id, status, verdict, source = found
            given = by_item.get(item_id, [])
            first = [(u, v) for r, u, v in given if r == FIRST_ROUND]
            second = [(u, v) for r, u, v in given if r == SECOND_ROUND]
            rows["verdict"].append(verdict or None)
            rows["verdict_status"].append(status)
            rows["verdict_source"].append(source or None)
            rows["round1_verdicts"].append(";".join(f"{u}={v}" for u, v in first) or None)
            rows["round1_count"].append(len(first))
            rows["round2_verdict"].append(second[-1][1] if second else None)
            rows["round2_expert"].append(second[-1][0] if second else None)
        self._ids, self._rows = tuple(ids), rows


EXPORT_COLUMN_NAMES = (
    "verdict",
    "verdict_status",
    "verdict_source",
    "round1_verdicts",
    "round1_count",
    "round2_verdict",
    "round2_expert",
)


def export_extra_columns(campaign: ProofreadingCampaign) -> list[ExtraColumn]:
    """The verdict columns a campaign adds to the detections table: the final verdict, where
    items stand (pending / second_round / decided) and who decided (first_round / expert), the
    first-round verdicts as ``reviewer=verdict;...`` and their number, the expert's verdict."""
    columns = _VerdictColumns(campaign)

    def reader(name: str) -> Any:
        return lambda ids: columns.column(name, ids)

    return [
        ExtraColumn(name, reader(name), "int" if name == "round1_count" else "string")
        for name in EXPORT_COLUMN_NAMES
    ]


def export_batches_of(
    campaign: ProofreadingCampaign, extra: Sequence[ExtraColumn]
) -> Iterator[pd.DataFrame]:
    """The campaign's detections (its items only) with ``extra`` (``export_extra_columns``),
    batch by batch, in segment-id order."""
    within = CampaignItem.objects.filter(campaign=campaign).values("detection_id")
    return export_batches(campaign.layer, extra=extra, within=within)


def campaign_detections_frame(campaign: ProofreadingCampaign) -> pd.DataFrame:
    """The campaign's detections with their verdict columns, as one table: what the threshold
    page hands to ``pipeline.thresholds`` (``verdict_filter_scores``,
    ``fit_thresholds_from_verdicts``, with ``verdict_sets.threshold_classes`` as classes)."""
    extra = export_extra_columns(campaign)
    frames = list(export_batches_of(campaign, extra))
    if frames:
        return pd.concat(frames, ignore_index=True)
    from webapp.detections.exports import export_columns

    return pd.DataFrame(columns=export_columns(extra))
