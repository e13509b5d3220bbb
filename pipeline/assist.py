"""Model-assisted objects: a 3D mask grown from a click, and every object of a box as proposals.

Painting a nucleus slice by slice takes minutes; a click inside it and an Enter should do. Two
sources, one output (:class:`AssistObject`, a bbox and the boolean mask inside it):

- ``watershed`` (classical, no model): the image is smoothed, thresholded with Otsu (in a window
  around the click, or over the whole box), holes filled; touching objects are split by a seeded
  watershed on the distance transform of that foreground (seeds: its h-maxima, one per object).
  A click takes the split piece holding it: the one flooded from the distance maximum uphill of
  the click.
- ``model`` (when the dataset has a model): the model's probability and signed distance maps
  (nm) go through the pipeline's own :func:`pipeline.watershed.seeded_watershed`, exactly as
  ``segment`` does for a whole volume.

Masks travel as run lengths over the C-order flattening of their bbox (:func:`rle_encode`): a
nucleus of 30,000 voxels is a few hundred numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cc3d
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from pipeline.errors import InvalidInputError
from pipeline.normalise import Scaling
from pipeline.progress import ProgressCallback, no_progress
from pipeline.watershed import DEFAULT_SEED_THRESHOLD_NM, seeded_watershed

Source = Literal["model", "watershed"]

#: Largest object a click is expected to pick (nm): the window around the click reaches this
#: far on every side, so an object of this diameter is whole wherever the click lands in it.
DEFAULT_MAX_DIAMETER_NM = 10_000.0
#: Smallest object worth proposing (nm, diameter of the equivalent ball).
DEFAULT_MIN_DIAMETER_NM = 1_000.0
#: Depth (in voxels of the finest axis) a distance maximum must stand above its saddle to seed
#: its own object: lower splits bumpy objects, higher joins touching ones.
SPLIT_H_VOXELS = 1.0
#: Dark lines where objects touch: a black top-hat of this width (voxels) deeper than this
#: fraction of the object/background contrast is cut from the foreground before splitting.
VALLEY_WIDTH_VOXELS = 3
VALLEY_CONTRAST = 0.1
#: A click this close (nm) to an object's edge, outside it, still picks it.
SNAP_NM = 400.0
#: The stage propose_all reports progress under (shown to the person waiting).
STAGE = "proposing objects"


@dataclass(frozen=True)
class Predictions:
    """A model's maps over the same voxels as the image: probability (0..1), distance (nm)."""

    probability: npt.NDArray[np.floating[Any]]
    distance: npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class AssistObject:
    """One proposed object: half-open bbox (z0, y0, x0, z1, y1, x1) and its mask inside it."""

    bbox: tuple[int, int, int, int, int, int]
    mask: npt.NDArray[np.bool_]
    score: float
    source: Source

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def proposal(self, object_id: str) -> dict[str, Any]:
        """The Proposal of the issue-10 contract (box-local coordinates as given)."""
        return {
            "id": object_id,
            "bbox": list(self.bbox),
            "rle": rle_encode(self.mask),
            "voxels": self.voxels,
            "score": round(float(self.score), 4),
            "source": self.source,
        }

    def shifted(self, offset: Sequence[int]) -> AssistObject:
        """The same object with its bbox moved by ``offset`` (z, y, x)."""
        z, y, x = (int(v) for v in offset)
        z0, y0, x0, z1, y1, x1 = self.bbox
        bbox = (z0 + z, y0 + y, x0 + x, z1 + z, y1 + y, x1 + x)
        return AssistObject(bbox=bbox, mask=self.mask, score=self.score, source=self.source)

    def paste(self, shape: Sequence[int]) -> npt.NDArray[np.bool_]:
        """The mask in a zero volume of ``shape`` (for measuring against a truth)."""
        out = np.zeros(tuple(shape), dtype=bool)
        z0, y0, x0, z1, y1, x1 = self.bbox
        out[z0:z1, y0:y1, x0:x1] = self.mask
        return out


def rle_encode(mask: npt.NDArray[np.bool_]) -> list[int]:
    """Runs of True over the C-order flattening: [start, length, start, length, ...]."""
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    edges = np.flatnonzero(np.diff(np.concatenate([[False], flat, [False]]).astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    runs = np.empty(2 * starts.size, dtype=np.int64)
    runs[0::2], runs[1::2] = starts, stops - starts
    return [int(v) for v in runs]


def rle_decode(runs: Sequence[int], shape: Sequence[int]) -> npt.NDArray[np.bool_]:
    """The mask of ``shape`` whose C-order runs are ``runs`` (inverse of :func:`rle_encode`)."""
    size = math.prod(int(n) for n in shape)
    if len(runs) % 2:
        raise InvalidInputError("run lengths come in (start, length) pairs")
    flat = np.zeros(size, dtype=bool)
    for start, length in zip(runs[0::2], runs[1::2], strict=True):
        if start < 0 or length < 0 or start + length > size:
            raise InvalidInputError(f"run ({start}, {length}) lies outside {size} voxels")
        flat[start : start + length] = True
    return flat.reshape(tuple(int(n) for n in shape))


def _check(image: npt.NDArray[Any], voxel_size: Sequence[float]) -> tuple[float, float, float]:
    if image.ndim != 3 or min(image.shape) < 1:
        raise InvalidInputError(f"the image must be 3D (z, y, x), got shape {image.shape}")
    sizes = tuple(float(v) for v in voxel_size)
    if len(sizes) != 3 or min(sizes) <= 0 or not all(math.isfinite(v) for v in sizes):
        raise InvalidInputError(f"voxel size must be three positive numbers (nm), got {sizes}")
    return sizes[0], sizes[1], sizes[2]


def _check_predictions(predictions: Predictions, shape: tuple[int, ...]) -> None:
    for name in ("probability", "distance"):
        if tuple(getattr(predictions, name).shape) != shape:
            raise InvalidInputError(f"the {name} map's shape differs from the image's {shape}")


def _smoothed(image: npt.NDArray[Any], voxel_size: Sequence[float]) -> npt.NDArray[np.float32]:
    """Gaussian of one finest-voxel width in nm on every axis: noise down, edges kept."""
    finest = min(voxel_size)
    sigma = tuple(finest / float(v) for v in voxel_size)
    return np.asarray(
        ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma), dtype=np.float32
    )


def _foreground(
    smoothed: npt.NDArray[np.float32],
    bright: bool | None,
    at: Any = None,
    threshold: float | None = None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], float]:
    """Foreground (Otsu's threshold unless given), its core without dark valleys, the threshold.

    Polarity comes from ``bright`` or, when None, from the voxel ``at``. The core drops the thin
    dark lines where two objects touch (black top-hat above a tenth of the object/background
    contrast): the distance transform of the core then has a deep saddle between them.
    """
    empty = np.zeros(smoothed.shape, dtype=bool)
    if float(smoothed.min()) == float(smoothed.max()):
        return empty, empty, 0.0
    if threshold is None:
        threshold = float(threshold_otsu(smoothed))  # type: ignore[no-untyped-call]
    if bright is None:
        bright = bool(smoothed[at] > threshold)
    signal = smoothed if bright else -smoothed
    fg = signal > (threshold if bright else -threshold)
    # Slice by slice: a 3D fill would treat an object cut by the window's face as a hole's rim.
    fg = np.stack([ndimage.binary_fill_holes(plane) for plane in fg])
    if fg.all() or not fg.any():
        return fg, fg, threshold
    valley = ndimage.grey_closing(signal, size=(VALLEY_WIDTH_VOXELS,) * 3) - signal
    contrast = float(np.median(signal[fg]) - np.median(signal[~fg]))
    core = fg & ~(valley > VALLEY_CONTRAST * contrast)
    return fg, core, threshold


def _split_touching(
    foreground: npt.NDArray[np.bool_], core: npt.NDArray[np.bool_], voxel_size: Sequence[float]
) -> npt.NDArray[np.uint32]:
    """Seeded watershed on the core's distance transform, one object per h-maximum, flooding
    the whole foreground (the valley voxels go to the nearer object)."""
    if not core.any():
        return np.zeros(foreground.shape, dtype=np.uint32)
    distance = ndimage.distance_transform_edt(core, sampling=tuple(voxel_size))
    distance = np.asarray(
        ndimage.gaussian_filter(distance.astype(np.float32), 1.0), dtype=np.float32
    )
    distance[~core] = 0
    h = SPLIT_H_VOXELS * min(voxel_size)
    peaks = h_maxima(distance, h).astype(bool) & core  # type: ignore[no-untyped-call]
    seeds = np.asarray(cc3d.connected_components(peaks, connectivity=26, out_dtype=np.uint32))
    labels = watershed(-distance, markers=seeds, mask=foreground)  # type: ignore[no-untyped-call]
    return np.asarray(labels, dtype=np.uint32)


def _model_labels(
    predictions: Predictions, region: tuple[slice, ...], seed_threshold_nm: float
) -> npt.NDArray[np.uint32]:
    distance = np.asarray(predictions.distance[region], dtype=np.float32)
    probability = np.asarray(predictions.probability[region], dtype=np.float32)
    return seeded_watershed(distance, seed_threshold=seed_threshold_nm, probability=probability)


def label_objects(
    labels: npt.NDArray[np.uint32],
    offset: Sequence[int],
    source: Source,
    scores: dict[int, float],
    min_voxels: int,
) -> list[AssistObject]:
    """The objects of ``labels`` (ids 1..n) of at least ``min_voxels``, bboxes shifted by
    ``offset``, each scored from ``scores`` (clipped to 0..1; 0 when missing)."""
    found = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        mask = labels[where] == index
        if int(np.count_nonzero(mask)) < min_voxels:
            continue
        lo = [int(s.start) + int(o) for s, o in zip(where, offset, strict=True)]
        hi = [int(s.stop) + int(o) for s, o in zip(where, offset, strict=True)]
        found.append(
            AssistObject(
                bbox=(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]),
                mask=np.ascontiguousarray(mask),
                score=float(np.clip(scores.get(index, 0.0), 0.0, 1.0)),
                source=source,
            )
        )
    return found


def ball_voxels(diameter_nm: float, voxel_size: Sequence[float]) -> int:
    """Voxels of a ball of ``diameter_nm``: the smallest object worth proposing."""
    return max(1, int(math.pi / 6 * diameter_nm**3 / math.prod(voxel_size)))


def _contrast_scores(
    labels: npt.NDArray[np.uint32], smoothed: npt.NDArray[np.float32], threshold: float
) -> dict[int, float]:
    """How far each object's median stands above the threshold, against the brightest voxels."""
    top = float(np.percentile(smoothed, 99.5))
    if top <= threshold or not labels.any():
        return {}
    n = int(labels.max())
    index = np.arange(1, n + 1)
    medians = ndimage.median(smoothed, labels, index)
    return {
        int(i): abs(float(m) - threshold) / (top - threshold)
        for i, m in zip(index, np.atleast_1d(medians), strict=True)
    }


def probability_scores(
    labels: npt.NDArray[np.uint32], probability: npt.NDArray[Any]
) -> dict[int, float]:
    """Mean probability of each object of ``labels`` (ids 1..n)."""
    if not labels.any():
        return {}
    index = np.arange(1, int(labels.max()) + 1)
    means = ndimage.mean(np.asarray(probability, dtype=np.float32), labels, index)
    return {int(i): float(m) for i, m in zip(index, np.atleast_1d(means), strict=True)}


def object_from_click(
    image: npt.NDArray[Any],
    click_zyx: Sequence[int],
    voxel_size: Sequence[float],
    predictions: Predictions | None = None,
    *,
    max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM,
    seed_threshold_nm: float = DEFAULT_SEED_THRESHOLD_NM,
) -> AssistObject | None:
    """The object holding the voxel ``click_zyx`` of ``image``, or None where there is none
    (:func:`click_object` also says why)."""
    found, _ = click_object(
        image,
        click_zyx,
        voxel_size,
        predictions,
        max_diameter_nm=max_diameter_nm,
        seed_threshold_nm=seed_threshold_nm,
    )
    return found


def click_object(
    image: npt.NDArray[Any],
    click_zyx: Sequence[int],
    voxel_size: Sequence[float],
    predictions: Predictions | None = None,
    *,
    max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM,
    seed_threshold_nm: float = DEFAULT_SEED_THRESHOLD_NM,
) -> tuple[AssistObject | None, str]:
    """The object holding the clicked voxel and a sentence on what was found (or why not).

    Only a window reaching ``max_diameter_nm`` around the click is read, so a click costs the
    same in any box; an object reaching the window's side (inside the image) is larger than
    that, which is background or a failed split, and is not proposed. With ``predictions`` the
    model's maps are used, else the image.
    """
    sizes = _check(image, voxel_size)
    shape = tuple(int(n) for n in image.shape)
    click = tuple(int(v) for v in click_zyx)
    if len(click) != 3 or any(not 0 <= c < n for c, n in zip(click, shape, strict=True)):
        raise InvalidInputError(f"click {tuple(click_zyx)} lies outside the image {shape}")
    if predictions is not None:
        _check_predictions(predictions, shape)
    reach = [max(1, math.ceil(max_diameter_nm / v)) for v in sizes]
    region = click_window(click, shape, sizes, max_diameter_nm)
    lo = [r.start for r in region]
    at = tuple(c - a for c, a in zip(click, lo, strict=True))
    too_wide = (
        f"The region at this voxel is wider than {max_diameter_nm / 1000:g} um: background, "
        "or objects that could not be told apart."
    )
    if predictions is not None:
        labels = _model_labels(predictions, region, seed_threshold_nm)
        if not labels[at]:
            return None, "The model sees no object at this voxel."
        scores = probability_scores(labels, predictions.probability[region])
        picked = labels == labels[at]
        if _wider_than(picked, reach):
            return None, too_wide
        score = {1: scores[int(labels[at])]}
        found = label_objects(picked.astype(np.uint32), lo, "model", score, 1)
        return found[0], f"An object of {found[0].voxels} voxels (model)."
    smoothed = _smoothed(image[region], sizes)
    if float(smoothed.min()) == float(smoothed.max()):
        return None, "The image is flat here: there is no object to grow."
    threshold = _click_threshold(smoothed, at, float(threshold_otsu(smoothed)))  # type: ignore[no-untyped-call]
    # The clicked voxel's side of the threshold first (bright or dark objects); when that gives
    # background (too wide), the other: a click just outside a small object's blurred edge.
    reason = "The image shows no object at this voxel."
    for bright in (bool(smoothed[at] > threshold), bool(smoothed[at] <= threshold)):
        foreground, core, _ = _foreground(smoothed, bright, threshold=threshold)
        seed = _snap(foreground, at, sizes)
        if seed is None:
            continue
        # Only the component holding the click: the rest of the window is not asked about.
        parts = np.asarray(cc3d.connected_components(foreground, connectivity=6))
        piece = parts == parts[seed]
        # Split only the clicked component's bounding box: far fewer voxels than the window.
        # One voxel of margin: the distance transform must see the background around it.
        bounds = ndimage.find_objects(piece.astype(np.uint8))[0]
        crop = tuple(
            slice(max(0, c.start - 1), min(n, c.stop + 1))
            for c, n in zip(bounds, piece.shape, strict=True)
        )
        labels = np.zeros(piece.shape, dtype=np.uint32)
        labels[crop] = _split_touching(piece[crop], (core & piece)[crop], sizes)
        if not labels[seed]:
            reason = "No object could be separated at this voxel."
            continue
        picked = labels == labels[seed]
        if _wider_than(picked, reach):
            reason = too_wide
            continue
        scores = _contrast_scores(picked.astype(np.uint32), smoothed, threshold)
        found = label_objects(picked.astype(np.uint32), lo, "watershed", scores, 1)
        return found[0], f"An object of {found[0].voxels} voxels (watershed)."
    return None, reason


def click_window(
    click: Sequence[int],
    shape: Sequence[int],
    voxel_size: Sequence[float],
    max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM,
) -> tuple[slice, ...]:
    """The voxels a click looks at: ``max_diameter_nm`` on every side, clipped to ``shape``.

    A caller holding a large image reads only these (the answer is the same as on the whole).
    """
    reach = [max(1, math.ceil(max_diameter_nm / float(v))) for v in voxel_size]
    return tuple(
        slice(max(0, int(c) - r), min(int(n), int(c) + r + 1))
        for c, r, n in zip(click, reach, shape, strict=True)
    )


def _click_threshold(smoothed: npt.NDArray[np.float32], at: tuple[int, ...], otsu: float) -> float:
    """Otsu's threshold of the window, moved half-way towards the background when the clicked
    object is dimmer than Otsu assumes (a dim nucleus next to bright ones)."""
    near = tuple(slice(max(0, a - 1), a + 2) for a in at)
    level = float(np.median(smoothed[near]))
    below = smoothed[smoothed <= otsu]
    above = smoothed[smoothed > otsu]
    if not below.size or not above.size:
        return otsu
    background, objects = float(np.median(below)), float(np.median(above))
    if level > otsu or level <= background:
        return otsu  # the click is on a bright object, or on the background itself
    if objects < background:  # dark objects: mirror
        return otsu
    return min(otsu, 0.5 * (background + level))


def _snap(
    foreground: npt.NDArray[np.bool_], at: tuple[int, ...], voxel_size: Sequence[float]
) -> tuple[int, ...] | None:
    """``at`` if in the foreground, else the nearest foreground voxel within SNAP_NM."""
    if foreground[at]:
        return at
    reach = [max(1, math.ceil(SNAP_NM / v)) for v in voxel_size]
    lo = [max(0, a - r) for a, r in zip(at, reach, strict=True)]
    window = foreground[tuple(slice(a, a + 2 * r + 1) for a, r in zip(lo, reach, strict=True))]
    where = np.argwhere(window)
    if not len(where):
        return None
    offsets = (where + np.array(lo) - np.array(at)) * np.array(voxel_size)
    nearest = np.argmin((offsets**2).sum(axis=1))
    if float(np.sqrt((offsets[nearest] ** 2).sum())) > SNAP_NM:
        return None
    return tuple(int(v) for v in where[nearest] + np.array(lo))


def _wider_than(mask: npt.NDArray[np.bool_], reach: Sequence[int]) -> bool:
    """True when the mask spans more than ``reach`` voxels (max diameter) along an axis."""
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=others))
        if present.size and present[-1] - present[0] + 1 > reach[axis] + 1:
            return True
    return False


def propose_all(
    image: npt.NDArray[Any],
    voxel_size: Sequence[float],
    predictions: Predictions | None = None,
    *,
    progress: ProgressCallback = no_progress,
    min_diameter_nm: float = DEFAULT_MIN_DIAMETER_NM,
    seed_threshold_nm: float = DEFAULT_SEED_THRESHOLD_NM,
) -> list[AssistObject]:
    """Every object of ``image`` (a task box), largest score first.

    Classical: Otsu over the box (bright objects), holes filled, touching objects split by the
    distance-transform watershed. With ``predictions``: the pipeline's seeded watershed on them.
    Objects smaller than a ball of ``min_diameter_nm`` are dropped (noise, slivers at the edge).
    """
    sizes = _check(image, voxel_size)
    shape = tuple(int(n) for n in image.shape)
    everything = tuple(slice(0, n) for n in shape)
    stages = 3
    progress(STAGE, 0, stages)
    if predictions is not None:
        _check_predictions(predictions, shape)
        progress(STAGE, 1, stages)
        labels = _model_labels(predictions, everything, seed_threshold_nm)
        progress(STAGE, 2, stages)
        source: Source = "model"
        scores = probability_scores(labels, predictions.probability)
    else:
        smoothed = _smoothed(image, sizes)
        foreground, core, threshold = _foreground(smoothed, True)
        progress(STAGE, 1, stages)
        labels = _split_touching(foreground, core, sizes)
        progress(STAGE, 2, stages)
        source = "watershed"
        scores = _contrast_scores(labels, smoothed, threshold)
    found = label_objects(labels, (0, 0, 0), source, scores, ball_voxels(min_diameter_nm, sizes))
    progress(STAGE, 3, stages)
    return sorted(found, key=lambda o: (-o.score, o.bbox))


def classical_labels(
    image: npt.NDArray[Any], voxel_size: Sequence[float]
) -> npt.NDArray[np.uint32]:
    """Every bright object of a 2D or 3D image without a model: the classical baseline.

    Smoothing, Otsu, holes filled, touching objects split by a watershed from the distance
    transform's h-maxima (as ``propose_all`` without a model). A 2D image is one slice of a volume
    whose third axis is as fine as its finest axis.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        finest = min(float(v) for v in voxel_size)
        flat: npt.NDArray[np.uint32] = classical_labels(array[None], (finest, *voxel_size))[0]
        return flat
    sizes = _check(array, voxel_size)
    smoothed = _smoothed(array, sizes)
    foreground, core, _ = _foreground(smoothed, True)
    return _split_touching(foreground, core, sizes)


def predict_box(
    model_path: Path,
    image: npt.NDArray[Any],
    work_dir: Path,
    *,
    scaling: Scaling | None = None,
    progress: ProgressCallback = no_progress,
) -> Predictions:
    """A model's probability and distance maps over ``image`` (a box), through ``predict``.

    The box is normalised as the model says, by its own intensities unless ``scaling`` is given:
    pass the whole volume's (``load_model(path).normalisation.scaling(volume)``, computed once)
    so that every box of a volume sees the same map, as whole-volume prediction does.
    """
    import zarr

    from pipeline.predict import predict_volume  # torch: only when a model is used

    result = predict_volume(Path(model_path), image, work_dir, scaling=scaling, progress=progress)
    probability = np.asarray(zarr.open_array(str(result.probability_path / "s0"), mode="r")[:])
    distance = np.asarray(zarr.open_array(str(result.distance_path / "s0"), mode="r")[:])
    return Predictions(probability=probability, distance=distance)
