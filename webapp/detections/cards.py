"""Proofreading gallery cards of a segmentation layer: the job that renders them, and one card
on demand.

A card (``pipeline.gallery``: three mid-slices with the object's outline and a render of its
mesh, a ~10 KB palette PNG) is drawn from the layer's label image, the image it belongs to and
its meshes. Cards are a cache, not data: they live under ``DATA_ROOT/var/cards/layer-<id>/<key>/
<segment id>.png``, where ``key`` (``pipeline.gallery.card_set_key``) hashes the renderer, the
style, the layer's detections build and the stores' metadata, so any change of those renders
into a new directory and a stale card is never served; older directories are removed when a
newer set's build succeeds.

- The job (``CardBuild`` on the core job base) renders every detection of the layer, the
  ``priority`` segments first (a gallery's first pages), then the rest in spatial order through
  one chunk cache (``render_cards``: ~100 cards/s here, bench/cards.py), skipping cards already
  there. It is queued when a detections table is built and when a campaign's gallery is opened
  without a card set for the layer's current data; the API rebuilds it on request.
- A card the job has not reached yet is rendered on demand by the request that asks for it
  (:func:`card_file`), so the first page of a gallery never waits for the job. On-demand
  renders are serialised per process (one lock, one open source and chunk cache per card set),
  which bounds them to what the pages being looked at ask for.
- Every card has its geometry (``pipeline.gallery.CardGeometry``: where its pixels lie in the
  layer) in ``<segment id>.json`` beside the PNG, written before it; a page of cards carries it,
  so the gallery maps a click on a slice tile to a voxel (missed-object points).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from pipeline.errors import PipelineError
from pipeline.gallery import (
    CardGeometry,
    CardSource,
    CardStyle,
    ChunkCache,
    card_path,
    card_set_key,
    open_card_source,
    read_card_geometry,
    render_card,
    render_cards,
    store_version,
    write_card,
)
from pipeline.gallery import Detection as CardDetection
from pipeline.progress import ProgressCallback
from webapp.core.errors import InvalidRequest, NotAllowed, NotFound
from webapp.core.jobs.lifecycle import job_create_queued
from webapp.core.jobs.models import ACTIVE_STATUSES
from webapp.core.jobs.progress import JobProgressWriter
from webapp.core.jobs.runner import JobRunner
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.builds import mesh_layer_of, source_image_layer
from webapp.detections.models import CardBuild, Detection, DetectionBuild, JobStatus

logger = logging.getLogger(__name__)

#: The cards' look: the renderer's defaults (2 x 2 tiles of 96 px, 194 px square cards).
CARD_STYLE = CardStyle()
#: Segments a build renders before the rest (a gallery's first pages).
MAX_PRIORITY = 1000
#: Decoded chunks kept per card set for on-demand renders, and card sets kept open per process.
ON_DEMAND_CACHE_BYTES = 64 << 20
ON_DEMAND_SOURCES = 4
_CARD_COLUMNS = (
    "segment_id",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "centroid_z",
    "centroid_y",
    "centroid_x",
)


def cards_root() -> Path:
    """Where every layer's card sets live (a cache beside the datasets, not inside them)."""
    return Path(settings.DATA_ROOT) / "var" / "cards"


def layer_cards_dir(layer_id: int) -> Path:
    return cards_root() / f"layer-{int(layer_id)}"


def card_set_dir(layer_id: int, key: str) -> Path:
    return layer_cards_dir(layer_id) / key


@dataclass(frozen=True)
class CardInputs:
    """The stores one layer's cards are drawn from."""

    labels: Path
    image: Path | None
    meshes: Path | None
    window: tuple[float, float] | None


def card_inputs(layer: Layer) -> CardInputs:
    """The layer's label image, the image it belongs to (with its contrast window, so every
    card of the layer shares one) and its meshes."""
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(f"Layer {layer.name!r} is not a segmentation layer.")
    root = layer.dataset.root
    image = source_image_layer(layer)
    meshes = mesh_layer_of(layer)
    window = None
    low, high = (image.contrast_min, image.contrast_max) if image is not None else (None, None)
    if low is not None and high is not None and high > low:
        window = (float(low), float(high))
    return CardInputs(
        labels=root / layer.path,
        image=root / image.path if image is not None else None,
        meshes=root / meshes.path if meshes is not None else None,
        window=window,
    )


def card_key(layer: Layer) -> str:
    """The name of the card set for the layer's data as it is now (a few ``stat`` calls)."""
    inputs = card_inputs(layer)
    build = (
        DetectionBuild.objects.filter(layer=layer, status=JobStatus.SUCCEEDED)
        .order_by("-finished", "-id")
        .values_list("id", flat=True)
        .first()
    )
    try:
        stores = store_version(inputs.labels, inputs.image, inputs.meshes)
    except OSError:
        stores = "unreadable"  # the job and on-demand renders say why
    version = f"layer={layer.id};detections={build};stores={stores};window={inputs.window}"
    return card_set_key(version, CARD_STYLE)


def open_source(inputs: CardInputs) -> CardSource:
    if inputs.image is None:
        raise InvalidRequest("The layer's dataset has no image layer to draw cards from.")
    meshes = inputs.meshes if inputs.meshes is not None and inputs.meshes.is_dir() else None
    return open_card_source(inputs.image, inputs.labels, mesh_dir=meshes, window=inputs.window)


def card_detection(row: Sequence[Any], ndim: int) -> CardDetection:
    """A pipeline detection from a row of ``_CARD_COLUMNS`` (a 2D layer drops z)."""
    sid, z0, y0, x0, z1, y1, x1, cz, cy, cx = row
    if ndim == 2:
        return CardDetection(int(sid), (y0, x0), (y1, x1), (float(cy), float(cx)))
    return CardDetection(int(sid), (z0, y0, x0), (z1, y1, x1), (float(cz), float(cy), float(cx)))


# --- the job ------------------------------------------------------------------------------------


def cards_build_start(
    layer: Layer,
    *,
    user: User | None = None,
    reason: str = "rebuild",
    priority: Iterable[int] = (),
    force: bool = False,
    enqueue: bool = True,
) -> CardBuild:
    """Queue a render of ``layer``'s cards for its current data (sent to a worker on commit).

    A build of the same card set that is queued, running, or (unless ``force``) succeeded is
    returned instead of a new one. ``user`` (when given) must be allowed to change the dataset.
    """
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(
            f"Layer {layer.name!r} is a {layer.kind} layer: only segmentation layers have cards."
        )
    dataset = layer.dataset
    if user is not None and not Dataset.objects.allows(user, "change", dataset):
        raise NotAllowed("Only the dataset's owner can rebuild its gallery cards.")
    key = card_key(layer)
    same = CardBuild.objects.filter(layer=layer, key=key)
    wanted = list(ACTIVE_STATUSES) + ([] if force else [JobStatus.SUCCEEDED])
    existing = same.filter(status__in=wanted).order_by("-created").first()
    if existing is not None:
        return existing
    task = None
    if enqueue:
        from webapp.detections.tasks import cards_build_task  # tasks import this module

        task = cards_build_task
    ids = [int(i) for i in priority][:MAX_PRIORITY]
    return job_create_queued(
        CardBuild,
        task=task,
        layer=layer,
        owner=user or dataset.owner,
        reason=reason,
        key=key,
        params={"priority": ids, "force": force},
    )


def cards_build_after_detections(layer: Layer) -> CardBuild | None:
    """Queue the layer's cards once its detections table was (re)built (``CARDS_AUTO_BUILD``);
    a failure to queue is logged, never raised (the table build succeeded)."""
    if not getattr(settings, "CARDS_AUTO_BUILD", True):
        return None
    try:
        return cards_build_start(layer, reason="detections")
    except Exception:
        logger.exception("could not queue the gallery cards of layer %s", layer.id)
        return None


class _OffsetProgress:
    """One job-wide count over several ``render_cards`` calls."""

    def __init__(self, progress: ProgressCallback, offset: int, grand_total: int) -> None:
        self.progress, self.offset, self.grand_total = progress, offset, grand_total

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.progress("cards", self.offset + done, self.grand_total)


def _rows(layer: Layer, segment_ids: Sequence[int] | None) -> Any:
    queryset = Detection.objects.filter(layer_id=layer.id)
    if segment_ids is not None:
        queryset = queryset.filter(segment_id__in=list(segment_ids))
    return queryset.order_by("segment_id").values_list(*_CARD_COLUMNS).iterator(chunk_size=5000)


def _remove_older_sets(layer_id: int, keep: str) -> None:
    """Card sets of the layer other than ``keep`` and those of builds still active."""
    active = set(
        CardBuild.objects.filter(layer_id=layer_id, status__in=ACTIVE_STATUSES).values_list(
            "key", flat=True
        )
    )
    base = layer_cards_dir(layer_id)
    if not base.is_dir():
        return
    for entry in base.iterdir():
        if entry.is_dir() and entry.name != keep and entry.name not in active:
            shutil.rmtree(entry, ignore_errors=True)


class CardBuildRunner(JobRunner[CardBuild]):
    """Render one layer's cards into its card set's directory."""

    model = CardBuild
    work_prefix = "cards"
    failure_message = (
        "Rendering the gallery cards failed because of an internal error ({kind}); see the job log."
    )

    def load(self) -> CardBuild:
        return CardBuild.objects.select_related("layer__dataset", "owner").get(id=self.job_id)

    def work(self, job: CardBuild, work_dir: Path, progress: JobProgressWriter) -> None:
        layer = job.layer
        source = open_source(card_inputs(layer))
        ndim = source.labels.ndim
        out = card_set_dir(layer.id, job.key)
        skip = not job.params.get("force", False)
        priority = [int(i) for i in job.params.get("priority", [])][:MAX_PRIORITY]
        first = [card_detection(r, ndim) for r in _rows(layer, priority)] if priority else []
        firsts = {d.segment_id for d in first}
        rest = [card_detection(r, ndim) for r in _rows(layer, None) if int(r[0]) not in firsts]
        total = len(first) + len(rest)
        written = failed = 0
        offset = 0
        for part in (first, rest):
            if not part:
                continue
            result = render_cards(
                source,
                part,
                out,
                CARD_STYLE,
                skip_existing=skip,
                progress=_OffsetProgress(progress, offset, total),
            )
            offset += len(part)
            written += result.written + result.skipped
            failed += len(result.failed)
            for sid, message in list(result.failed.items())[:5]:
                logger.warning("card of segment %s (layer %s): %s", sid, layer.id, message)
        progress.check_cancelled()
        with transaction.atomic():
            self.succeed(n_cards=written, n_failed=failed)
        _remove_older_sets(layer.id, job.key)
        logger.info("cards of layer %s: %d in the set, %d failed", layer.id, written, failed)


def cards_build_run(job_id: int, *, progress: ProgressCallback | None = None) -> CardBuild:
    """Run card build ``job_id`` to its end (idempotent: an ended build is left as it is)."""
    return CardBuildRunner(job_id, progress=progress).run()


def cards_build_now(layer: Layer, *, reason: str = "command", force: bool = False) -> CardBuild:
    """Render ``layer``'s cards in this process (commands, tests); returns the ended build."""
    build = cards_build_start(layer, reason=reason, force=force, enqueue=False)
    return cards_build_run(build.id)


# --- serving ------------------------------------------------------------------------------------


def current_card_key(layer: Layer) -> str:
    """The card set requests are served from: the latest build's (one indexed row), else the
    key of the layer's data as it is now."""
    key = (
        CardBuild.objects.filter(layer=layer)
        .order_by("-created", "-id")
        .values_list("key", flat=True)
        .first()
    )
    return key or card_key(layer)


@dataclass(frozen=True)
class CardFile:
    path: Path
    key: str
    #: Set when the card was drawn by this request; else in the sidecar (:meth:`read_geometry`).
    drawn: CardGeometry | None = None

    def read_geometry(self) -> CardGeometry | None:
        """The card's geometry: the one drawn now, else its sidecar's (None if unreadable)."""
        if self.drawn is not None:
            return self.drawn
        return read_card_geometry(self.path.parent, int(self.path.stem))

    @property
    def etag(self) -> str:
        """Strong: the key names every input of the pixels, the renderer is deterministic."""
        return f'"{self.key}-{self.path.stem}"'


_render_lock = threading.Lock()
_open_sources: OrderedDict[str, tuple[CardSource, ChunkCache]] = OrderedDict()


def _source_for(key: str, opener: Callable[[], CardSource]) -> tuple[CardSource, ChunkCache]:
    """An open source and chunk cache per card set (under ``_render_lock``)."""
    found = _open_sources.get(key)
    if found is None:
        found = (opener(), ChunkCache(ON_DEMAND_CACHE_BYTES))
        _open_sources[key] = found
        while len(_open_sources) > ON_DEMAND_SOURCES:
            _open_sources.popitem(last=False)
    _open_sources.move_to_end(key)
    return found


def card_file(layer: Layer, segment_id: int, *, render: bool = True) -> CardFile:
    """The card of one detection of ``layer``: the job's file, or rendered now (see the
    module docstring). 404 when the layer has no such detection or it cannot be drawn.

    A file in the current set needs no look-up of the detection: the set's key names the
    detections build it was drawn from, so a segment gone from the table has no file there.
    """
    key = current_card_key(layer)
    target = card_path(card_set_dir(layer.id, key), segment_id)
    if target.is_file():
        return CardFile(target, key)
    found = (
        Detection.objects.filter(layer_id=layer.id, segment_id=segment_id)
        .values_list(*_CARD_COLUMNS)
        .first()
    )
    if found is None:
        raise NotFound(f"Layer {layer.name!r} has no detection {segment_id}.")
    if not render:
        return CardFile(target, key)
    with _render_lock:
        if target.is_file():  # drawn meanwhile by another request or the job
            return CardFile(target, key)
        try:
            source, cache = _source_for(key, lambda: open_source(card_inputs(layer)))
            detection = card_detection(found, source.labels.ndim)
            card = render_card(source, detection, CARD_STYLE, cache=cache)
        except (PipelineError, InvalidRequest, OSError, ValueError) as exc:
            raise NotFound(f"The card of detection {segment_id} cannot be drawn: {exc}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_card(target.parent, card)
    return CardFile(target, key, card.geometry)


#: Cards one page request may ask for (a gallery page is 24).
MAX_PAGE_CARDS = 100


@dataclass(frozen=True)
class PageCard:
    segment_id: int
    png: bytes | None
    error: str
    geometry: CardGeometry | None = None


def card_page(layer: Layer, segment_ids: Sequence[int]) -> tuple[str, list[PageCard]]:
    """The cards of several detections at once (a gallery page: one request instead of one
    per card), each the job's file or drawn now, with its geometry (the sidecar's, or the
    render's); a detection that has no card gets its reason instead (the others are still
    answered). Returns the card set's key and the cards."""
    if not 1 <= len(segment_ids) <= MAX_PAGE_CARDS:
        raise InvalidRequest(f"segments must name 1 to {MAX_PAGE_CARDS} segment ids.")
    cards: list[PageCard] = []
    key = current_card_key(layer)
    for sid in segment_ids:
        try:
            card = card_file(layer, sid)
            cards.append(PageCard(sid, card.path.read_bytes(), "", card.read_geometry()))
            key = card.key
        except NotFound as exc:
            cards.append(PageCard(sid, None, str(exc)))
        except OSError:  # removed by a newer card set meanwhile
            cards.append(PageCard(sid, None, "The layer's cards changed; ask again."))
    return key, cards


def cards_status(layer: Layer) -> CardBuild | None:
    """The layer's latest card build, if any."""
    return CardBuild.objects.filter(layer=layer).order_by("-created", "-id").first()


def cards_forget_layer(layer_id: int) -> None:
    """Remove a deleted layer's card sets (they are a cache)."""
    shutil.rmtree(layer_cards_dir(layer_id), ignore_errors=True)
