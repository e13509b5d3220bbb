"""Reads of the review of painted campaigns: agreement between a box's painted label volumes,
and their consensus volume.

The volumes compared are those handed in: the current version of the box's assignments that are
submitted or approved (as for the points, :mod:`webapp.annotation.agreement`). The figures are
:mod:`pipeline.label_agreement`'s: objects matched one to one at IoU >= 0.5, per pair of
annotators (the first by slot the reference) precision, recall, F1, voxel Dice and the mean IoU
of the matched objects; the consensus keeps the voxels where a quorum (default a strict
majority of the volumes compared) of matched objects agree and lists the objects left out.

Reading and comparing the volumes of a box costs far more than a request should repeat (about
2.5 s for three annotators' 256^3 volumes on a loaded 2-core machine, 0.04 s from the cache), and
a version never changes, so each result is cached under a hash of what it was computed from: the
annotators' names and their versions' chunk maps (blob keys are content hashes). A save or
restore changes the key; a review that only changes a state does not. Computing a consensus
leaves the agreement of the same volumes in the cache too (one read of the box for both). The
consensus volume is written to the campaign's label store (content-addressed chunks, shared with
the assignments' versions) and served as OME-Zarr files under a URL naming the quorum and the
(assignment, version) pairs, so Neuroglancer may cache it for good; accepting it as ground truth
copies its manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache

from pipeline import label_agreement as la
from pipeline.label_export import neuroglancer_source
from pipeline.label_store import ChunkIndex, chunks_write, labels_read
from pipeline.label_versions import LabelVersion, chunk_key
from pipeline.point_agreement import default_quorum
from webapp.annotation import selectors
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    BoxLabelTruth,
    TaskBox,
)
from webapp.core.errors import InvalidRequest

COMPARED = (AssignmentState.SUBMITTED, AssignmentState.APPROVED)
IOU_THRESHOLD = 0.5
CACHE_SECONDS = 7 * 24 * 3600
# A consensus URL's token: the quorum and the (assignment, version) pairs, e.g. q2-12v3-13v5.
TOKEN = re.compile(r"^q([0-9]{1,2})((?:-[0-9]{1,12}v[0-9]{1,9}){2,16})$")


@dataclass(frozen=True)
class PaintedWork:
    """One annotator's handed-in labels of one box."""

    assignment_id: int
    annotator: str
    slot: int
    state: str
    version: int
    labels: selectors.Labels


def works_of(
    campaign: AnnotationCampaign,
    *,
    box_ids: Iterable[int] | None = None,
    states: Iterable[str] = COMPARED,
) -> dict[int, list[PaintedWork]]:
    """Per box id, each annotator's handed-in labels (by slot)."""
    rows = Assignment.objects.filter(
        box__campaign=campaign, state__in=list(states), annotator__isnull=False
    )
    if box_ids is not None:
        rows = rows.filter(box_id__in=list(box_ids))
    out: dict[int, list[PaintedWork]] = {}
    for a in rows.select_related("box", "annotator").order_by("box_id", "slot"):
        assert a.annotator is not None
        a.box.campaign = campaign
        out.setdefault(a.box_id, []).append(
            PaintedWork(
                a.pk, a.annotator.username, a.slot, a.state, a.version, selectors.labels_at(a)
            )
        )
    return out


def signature(works: Iterable[PaintedWork]) -> str:
    """The (assignment, version) pairs of ``works``: ``12v3-13v5``."""
    return "-".join(f"{w.assignment_id}v{w.version}" for w in works)


def _volume(work: PaintedWork) -> np.ndarray[Any, np.dtype[np.uint32]]:
    labels = work.labels
    return labels_read(labels.blobs, labels.geometry, labels.chunks)


def count_objects(labels: selectors.Labels) -> int:
    """How many distinct non-zero ids a version's labels hold."""
    ids = np.unique(labels_read(labels.blobs, labels.geometry, labels.chunks))
    return int(np.count_nonzero(ids))


def _comparison(works: list[PaintedWork]) -> la.LabelComparison:
    return la.LabelComparison({w.annotator: _volume(w) for w in works}, IOU_THRESHOLD)


def _figure(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _pair_body(p: la.LabelPairAgreement) -> dict[str, Any]:
    return {
        "reference": p.reference,
        "other": p.other,
        "n_reference": p.n_reference,
        "n_other": p.n_other,
        "matched": p.matched,
        "precision": _figure(p.precision),
        "recall": _figure(p.recall),
        "f1": _figure(p.f1),
        "dice": _figure(p.dice),
        "mean_matched_iou": _figure(p.mean_matched_iou),
        "matched_iou_sum": round(sum(m.iou for m in p.matches), 6),
        "foreground_reference": p.foreground_reference,
        "foreground_other": p.foreground_other,
        "foreground_intersection": p.foreground_intersection,
    }


def _summary_body(s: la.LabelAnnotatorSummary) -> dict[str, Any]:
    return {
        "annotator": s.annotator,
        "n_objects": s.n_objects,
        "foreground_voxels": s.foreground_voxels,
        "precision": _figure(s.precision),
        "recall": _figure(s.recall),
        "f1": _figure(s.f1),
        "dice": _figure(s.dice),
        "mean_matched_iou": _figure(s.mean_matched_iou),
    }


def _work_body(w: PaintedWork, n_objects: int, foreground: int) -> dict[str, Any]:
    return {
        "annotator": w.annotator,
        "assignment": w.assignment_id,
        "slot": w.slot,
        "state": w.state,
        "version": w.version,
        "n_objects": n_objects,
        "foreground_voxels": foreground,
    }


def content_key(works: Iterable[PaintedWork]) -> str:
    """What the figures depend on: each annotator's name and chunk map (blob keys are content
    hashes), hashed; unlike the ids and versions it cannot name other volumes after a restore
    of the database."""
    described = [
        [
            w.annotator,
            list(w.labels.geometry.shape),
            sorted((chunk_key(i), k) for i, k in w.labels.chunks.items()),
        ]
        for w in works
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:32]


def _agreement_key(works: list[PaintedWork]) -> str:
    return f"annotation:label-agreement:{content_key(works)}"


def _figures(
    works: list[PaintedWork], comparison: la.LabelComparison | None = None
) -> dict[str, Any]:
    """The cached part of a box's agreement: what depends on the volumes only (from
    ``comparison`` when one was made of the same volumes already)."""
    if len(works) < 2:
        own = {}
        for w in works:
            volume = _volume(w)
            ids = np.unique(volume)
            own[w.annotator] = [int(np.count_nonzero(ids)), int(np.count_nonzero(volume))]
        return {"own": own, "mean_f1": None, "mean_dice": None, "pairs": [], "summaries": []}
    result = (comparison or _comparison(works)).agreement()
    return {
        "own": {s.annotator: [s.n_objects, s.foreground_voxels] for s in result.summaries},
        "mean_f1": _figure(result.mean_f1),
        "mean_dice": _figure(result.mean_dice),
        "pairs": [_pair_body(p) for p in result.pairs],
        "summaries": [_summary_body(s) for s in result.summaries],
    }


def box_label_agreement(box: TaskBox, works: list[PaintedWork] | None = None) -> dict[str, Any]:
    """A box's painted agreement: its handed-in volumes (annotator, state, version, objects),
    each pair's figures and each annotator's summary (no pairs below two volumes)."""
    if works is None:
        works = works_of(box.campaign, box_ids=[box.pk]).get(box.pk, [])
    key = _agreement_key(works)
    figures = cache.get(key)
    if figures is None:
        figures = _figures(works)
        cache.set(key, figures, CACHE_SECONDS)
    own = figures.pop("own")
    return {
        "box": box.pk,
        "name": box.name,
        "iou_threshold": IOU_THRESHOLD,
        "annotators": [_work_body(w, *own[w.annotator]) for w in works],
        **figures,
    }


def _pooled_pair(a: str, b: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pair (a, b) pooled over the boxes both painted: counts summed, then the figures."""
    n_a = n_b = matched = fg_a = fg_b = inter = 0
    iou_sum = 0.0
    for p in rows:
        swap = p["reference"] != a
        n_a += p["n_other" if swap else "n_reference"]
        n_b += p["n_reference" if swap else "n_other"]
        fg_a += p["foreground_other" if swap else "foreground_reference"]
        fg_b += p["foreground_reference" if swap else "foreground_other"]
        matched += p["matched"]
        inter += p["foreground_intersection"]
        iou_sum += p["matched_iou_sum"]

    def ratio(x: float, y: float) -> float | None:
        return _figure(x / y) if y else None

    return {
        "reference": a,
        "other": b,
        "boxes": len(rows),
        "n_reference": n_a,
        "n_other": n_b,
        "matched": matched,
        "precision": ratio(matched, n_b),
        "recall": ratio(matched, n_a),
        "f1": ratio(2 * matched, n_a + n_b),
        "dice": ratio(2 * inter, fg_a + fg_b),
        "mean_matched_iou": ratio(iou_sum, matched),
    }


def campaign_label_agreement(campaign: AnnotationCampaign) -> dict[str, Any]:
    """Every box with two or more handed-in volumes (its figures as ``box_label_agreement``),
    and per annotator pair (names in alphabetical order, the first the reference) the counts
    pooled over the boxes both painted."""
    if not campaign.painted:
        raise InvalidRequest("This campaign's objects are not painted: see agreement/.")
    works = works_of(campaign)
    boxes = {b.pk: b for b in TaskBox.objects.filter(pk__in=list(works)).order_by("id")}
    rows = []
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for box_id, box in boxes.items():
        if len(works[box_id]) < 2:
            continue
        box.campaign = campaign
        row = box_label_agreement(box, works[box_id])
        rows.append(row)
        for p in row["pairs"]:
            names = sorted((p["reference"], p["other"]))
            by_pair.setdefault((names[0], names[1]), []).append(p)
    f1s = [r["mean_f1"] for r in rows if r["mean_f1"] is not None]
    dices = [r["mean_dice"] for r in rows if r["mean_dice"] is not None]
    return {
        "campaign": campaign.pk,
        "iou_threshold": IOU_THRESHOLD,
        "boxes_compared": len(rows),
        "mean_f1": _figure(sum(f1s) / len(f1s)) if f1s else None,
        "mean_dice": _figure(sum(dices) / len(dices)) if dices else None,
        "boxes": rows,
        "pairs": [_pooled_pair(a, b, by_pair[(a, b)]) for a, b in sorted(by_pair)],
    }


# --- consensus ----------------------------------------------------------------------------------


def check_quorum(value: int | None, n: int) -> int:
    """The quorum of ``n`` volumes: 1..n, default a strict majority."""
    quorum = default_quorum(n) if value is None else int(value)
    if not 1 <= quorum <= max(n, 1):
        raise InvalidRequest(f"quorum must be 1-{max(n, 1)} (the volumes handed in).")
    return quorum


@dataclass(frozen=True)
class Consensus:
    """A box's consensus of ``works`` at ``quorum``: its labels manifest and its summary."""

    works: list[PaintedWork]
    quorum: int
    chunks: Mapping[ChunkIndex, str]
    summary: dict[str, Any]  # pipeline.label_agreement.LabelConsensus.to_json

    @property
    def token(self) -> str:
        return f"q{self.quorum}-{signature(self.works)}"

    def manifest(self) -> dict[str, Any]:
        """As a label version's manifest (``Revision.labels``), for the accepted truth."""
        chunks = dict(self.chunks)
        return LabelVersion(number=1, based_on=0, chunks=chunks, changed=tuple(chunks)).to_json()


def consensus_of(box: TaskBox, works: list[PaintedWork], quorum: int) -> Consensus:
    """The consensus of two or more volumes (cached; its chunks written to the label store)."""
    assert len(works) >= 2
    key = f"annotation:label-consensus:q{quorum}:{content_key(works)}"
    geometry = selectors.label_geometry(box)
    blobs = selectors.label_blobs(box.campaign_id)
    cached = cache.get(key)
    if cached is not None and not all(blobs.path(k).is_file() for k in cached["chunks"].values()):
        cached = None  # the blob GC removed an unaccepted consensus's chunks: write them again
    if cached is None:
        comparison = _comparison(works)
        result = comparison.consensus(quorum)
        parts = {i: result.labels[geometry.chunk_slices(i)] for i in geometry.chunk_indices()}
        written = chunks_write(blobs, geometry, parts)
        chunks = {chunk_key(i): k for i, k in sorted(written.items()) if k is not None}
        cached = {"chunks": chunks, "summary": result.to_json()}
        cache.set(key, cached, CACHE_SECONDS)
        # The volumes are read and matched now: the agreement costs little more (the review
        # page asks for the consensus first, then the agreement, so a box is read once).
        if cache.get(_agreement_key(works)) is None:
            cache.set(_agreement_key(works), _figures(works, comparison), CACHE_SECONDS)
    manifest = LabelVersion.from_json({"number": 0, "chunks": cached["chunks"]}, geometry)
    return Consensus(works, quorum, manifest.chunks, cached["summary"])


def consensus_at_token(box: TaskBox, token: str) -> Consensus | None:
    """The consensus a file URL names, when its versions are still the box's handed-in ones
    (else None: the URL is stale and its files are gone)."""
    found = TOKEN.match(token)
    if found is None:
        return None
    works = works_of(box.campaign, box_ids=[box.pk]).get(box.pk, [])
    if len(works) < 2 or found.group(2)[1:] != signature(works):
        return None
    quorum = int(found.group(1))
    if not 1 <= quorum <= len(works):
        return None
    return consensus_of(box, works, quorum)


def truth_body(truth: BoxLabelTruth | None) -> dict[str, Any] | None:
    if truth is None:
        return None
    return {
        "source": truth.source,
        "assignment": truth.assignment_id,
        "quorum": truth.quorum,
        "members": truth.members,
        "objects": truth.objects_count,
        "chunks": len(truth.labels.get("chunks", {})),
        "accepted_by": truth.accepted_by.username if truth.accepted_by else None,
        "accepted_at": truth.accepted_at.isoformat(),
    }


def truth_of(box: TaskBox) -> BoxLabelTruth | None:
    return BoxLabelTruth.objects.filter(box=box).select_related("accepted_by").first()


def truth_labels(box: TaskBox, truth: BoxLabelTruth) -> selectors.Labels:
    """The accepted truth's labels, read like an assignment's version (number 0: it has none)."""
    geometry = selectors.label_geometry(box)
    manifest = LabelVersion.from_json(truth.labels, geometry)
    return selectors.Labels(0, geometry, manifest.chunks, selectors.label_blobs(box.campaign_id))


def box_label_consensus(
    box: TaskBox, quorum: int | None, base_url: str | None = None
) -> dict[str, Any]:
    """The consensus of the box's handed-in volumes at ``quorum``: its objects (id, voxels,
    centroid in box voxels, support, members), the objects left out for the reviewer, where its
    OME-Zarr files are (``base_url``: the absolute URL of ``label-consensus/``), how many
    handed-in tasks are not yet approved, and the accepted ground truth."""
    works = works_of(box.campaign, box_ids=[box.pk]).get(box.pk, [])
    q = check_quorum(quorum, len(works))
    body: dict[str, Any] = {
        "box": box.pk,
        "name": box.name,
        "quorum": q,
        "iou_threshold": IOU_THRESHOLD,
        "annotators": [
            {
                "annotator": w.annotator,
                "assignment": w.assignment_id,
                "state": w.state,
                "version": w.version,
            }
            for w in works
        ],
        "pending": sum(1 for w in works if w.state == AssignmentState.SUBMITTED),
        "chunks": 0,
        "objects": [],
        "unmatched": [],
        "source": None,
        "neuroglancer_source": None,
        "accepted": truth_body(truth_of(box)),
    }
    if len(works) < 2:
        return body
    found = consensus_of(box, works, q)
    body["chunks"] = len(found.chunks)
    body["objects"] = found.summary["objects"]
    body["unmatched"] = found.summary["unmatched"]
    if base_url is not None:
        url = f"{base_url}{found.token}/"
        body["source"] = url
        body["neuroglancer_source"] = neuroglancer_source(url)
    return body
