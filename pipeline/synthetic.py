"""A synthetic nuclei volume that looks like X-ray nanotomography of tissue, with its true labels.

Nuclei are randomly oriented, slightly irregular ellipsoids (radii 1.6-4.4 um) placed by random
sequential addition: most keep clear of their neighbours, about a third are placed against an
existing nucleus so that the two overlap and the shared voxels go to whichever is nearer in
normalised ellipsoid distance, which leaves them touching along a curved interface with distinct
ids. The image adds a smooth textured background, chromatin-like texture, a brighter nuclear
envelope, a darker line where nuclei touch (dimmed enough to show against the envelope that
brightens the rim there, as contacts show in X-ray nanotomography), blur, a slow intensity drift
along z, and Poisson plus Gaussian noise. Everything is drawn from one seeded generator, box by box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import fastremap
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from pipeline.errors import InvalidInputError

RADIUS_UM = (1.6, 4.4)
TOUCH_FRACTION = 0.35
CONTACT_DIMMING = 0.65  # the contact line against the nuclear envelope, which brightens it
_CANDIDATES = 64
_MAX_FAILED_ROUNDS = 40


@dataclass(frozen=True)
class _Nucleus:
    centre: npt.NDArray[np.float64]  # z y x, voxels
    radii: npt.NDArray[np.float64]  # along the rotated axes, voxels
    rotation: npt.NDArray[np.float64]  # 3x3, columns are the nucleus axes in z y x
    bumps: npt.NDArray[np.float64]  # (m, 3) unit directions of shape irregularities
    bump_amp: npt.NDArray[np.float64]
    bump_freq: npt.NDArray[np.float64]
    bump_phase: npt.NDArray[np.float64]

    @property
    def r_min(self) -> float:
        return float(self.radii.min() * (1 - np.abs(self.bump_amp).sum()))

    @property
    def r_max(self) -> float:
        return float(self.radii.max() * (1 + np.abs(self.bump_amp).sum()))


def _random_rotation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    rotation: npt.NDArray[np.float64] = q * np.sign(np.diag(r))
    return rotation


def _unit_vectors(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    v = rng.standard_normal((n, 3))
    units: npt.NDArray[np.float64] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return units


def _random_nucleus(rng: np.random.Generator, scale: float) -> _Nucleus:
    r = RADIUS_UM[0] + (RADIUS_UM[1] - RADIUS_UM[0]) * rng.beta(1.6, 2.4)
    radii = r * scale * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.95)])
    m = 3
    return _Nucleus(
        centre=np.zeros(3),
        radii=radii,
        rotation=_random_rotation(rng),
        bumps=_unit_vectors(rng, m),
        bump_amp=rng.uniform(-0.05, 0.05, m),
        bump_freq=rng.uniform(2.0, 4.0, m),
        bump_phase=rng.uniform(0, 2 * np.pi, m),
    )


def _place(
    shape: tuple[int, int, int], n_nuclei: int, rng: np.random.Generator, scale: float
) -> list[_Nucleus]:
    """Random sequential addition, some nuclei deliberately overlapping one earlier nucleus."""
    size = np.asarray(shape, dtype=np.float64)
    placed: list[_Nucleus] = []
    centres = np.zeros((0, 3))
    r_max = np.zeros(0)
    failed = 0
    while len(placed) < n_nuclei and failed < _MAX_FAILED_ROUNDS:
        nucleus = _random_nucleus(rng, scale)
        margin = 0.6 * nucleus.r_min
        partner = -1
        if placed and rng.random() < TOUCH_FRACTION:
            partner = int(rng.integers(len(placed)))
            reach = rng.uniform(0.75, 0.92, _CANDIDATES) * (nucleus.r_min + placed[partner].r_min)
            candidates = centres[partner] + _unit_vectors(rng, _CANDIDATES) * reach[:, None]
        else:
            candidates = rng.uniform(margin, size - margin, (_CANDIDATES, 3))
        inside = np.all((candidates >= margin) & (candidates <= size - margin), axis=1)
        distance = np.linalg.norm(candidates[:, None, :] - centres[None, :, :], axis=2)
        clear = distance > (nucleus.r_max + r_max + 1.0)[None, :]
        if partner >= 0:
            clear[:, partner] = True
        ok = np.flatnonzero(inside & clear.all(axis=1))
        if not len(ok):
            failed += 1
            continue
        failed = 0
        placed.append(replace(nucleus, centre=candidates[ok[0]]))
        centres = np.vstack([centres, candidates[ok[0]]])
        r_max = np.append(r_max, nucleus.r_max)
    return placed


def _draw(
    shape: tuple[int, int, int], nuclei: list[_Nucleus]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]:
    """Labels and the normalised radial distance (0 centre, 1 surface, inf outside)."""
    labels = np.zeros(shape, dtype=np.uint32)
    radial = np.full(shape, np.inf, dtype=np.float32)
    for index, nucleus in enumerate(nuclei, start=1):
        half = int(np.ceil(nucleus.r_max)) + 1
        lo = np.maximum(np.floor(nucleus.centre).astype(int) - half, 0)
        hi = np.minimum(np.floor(nucleus.centre).astype(int) + half + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        axes = [np.arange(lo[i], hi[i], dtype=np.float32) - nucleus.centre[i] for i in range(3)]
        dz, dy, dx = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        rot = nucleus.rotation.astype(np.float32)
        local = [rot[0, i] * dz + rot[1, i] * dy + rot[2, i] * dx for i in range(3)]
        norm = np.sqrt(sum((local[i] / np.float32(nucleus.radii[i])) ** 2 for i in range(3)))
        length = np.sqrt(dz**2 + dy**2 + dx**2) + np.float32(1e-6)
        wobble = np.ones_like(norm)
        for v, a, f, p in zip(
            nucleus.bumps, nucleus.bump_amp, nucleus.bump_freq, nucleus.bump_phase, strict=True
        ):
            cosine = (v[0] * dz + v[1] * dy + v[2] * dx) / length
            wobble += np.float32(a) * np.cos(np.float32(f) * cosine + np.float32(p))
        s = (norm / wobble).astype(np.float32)
        win = (s <= 1.0) & (s < radial[box])
        labels[box][win] = index
        radial[box][win] = s[win]
    return labels, radial


def _smooth_noise(
    shape: tuple[int, int, int], cell: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Zero-mean, unit-ish smooth noise with features about ``cell`` voxels across."""
    coarse = tuple(max(2, -(-n // cell) + 2) for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 1.0)
    field /= field.std() + 1e-6
    fine = ndimage.zoom(field, [cell] * 3, order=1, prefilter=False)
    return np.ascontiguousarray(fine[: shape[0], : shape[1], : shape[2]])


def _touching_lines(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Voxels of a nucleus that face a different nucleus (no background between)."""
    line = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        first, second = labels[tuple(a)], labels[tuple(b)]
        differ = (first != second) & (first > 0) & (second > 0)
        line[tuple(a)] |= differ
        line[tuple(b)] |= differ
    return line


def _render(
    labels: npt.NDArray[np.uint32],
    radial: npt.NDArray[np.float32],
    n: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint16]:
    shape = (int(labels.shape[0]), int(labels.shape[1]), int(labels.shape[2]))
    background = 0.30 + 0.05 * _smooth_noise(shape, 24, rng) + 0.025 * _smooth_noise(shape, 6, rng)
    brightness = np.concatenate([[0.0], rng.uniform(0.75, 1.0, n)]).astype(np.float32)
    inside = labels > 0
    chromatin = _smooth_noise(shape, 3, rng)
    s = np.where(inside, radial, np.float32(0))
    envelope = np.exp(-(((s - 0.93) / 0.06) ** 2))
    nucleus = brightness[labels] * (0.85 + 0.09 * chromatin + 0.12 * envelope)
    image = np.where(inside, nucleus, background).astype(np.float32)
    image[_touching_lines(labels)] *= np.float32(CONTACT_DIMMING)
    image = ndimage.gaussian_filter(image, 0.8)
    z = np.linspace(-0.5, 0.5, shape[0], dtype=np.float32)[:, None, None]
    image *= 1.0 + 0.25 * z
    counts = rng.poisson(np.clip(image, 0, None) * 600.0).astype(np.float32)
    counts += rng.standard_normal(shape, dtype=np.float32) * 12.0 + 100.0
    out: npt.NDArray[np.uint16] = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    return out


def make_nuclei_volume(
    shape: tuple[int, int, int] = (256, 256, 256),
    n_nuclei: int = 300,
    seed: int = 0,
    voxel_size_nm: float = 200.0,
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    """Return (image uint16, labels uint32 with ids 1..N, every id present), z y x order.

    Fewer than ``n_nuclei`` are placed when the volume is too full to fit them.
    """
    if len(shape) != 3 or min(shape) < 8 or int(np.prod(shape)) > 1024**3:
        raise InvalidInputError(f"synthetic shape must be 3D, 8..1024^3 voxels, got {shape}")
    if n_nuclei < 0 or voxel_size_nm <= 0:
        raise InvalidInputError("need n_nuclei >= 0 and a positive voxel size")
    size = (int(shape[0]), int(shape[1]), int(shape[2]))
    rng = np.random.default_rng(seed)
    nuclei = _place(size, n_nuclei, rng, 1000.0 / voxel_size_nm)
    labels, radial = _draw(size, nuclei)
    labels, _ = fastremap.renumber(labels, preserve_zero=True, in_place=True)
    labels = labels.astype(np.uint32, copy=False)
    image = _render(labels, radial, int(labels.max()), rng)
    return image, labels


def make_sphere_labels(
    shape: tuple[int, int, int],
    n_objects: int,
    *,
    radius_voxels: tuple[float, float] = (8.0, 12.0),
    gap_voxels: float = 1.0,
    seed: int = 0,
    mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Disjoint balls, each wholly inside the volume (or ``mask``): labels 1..N, centres, radii.

    For tests whose truth must be exact (counting, stereology): no ball touches another or the
    edge, so every object is whole and separate. Random sequential addition; fewer than
    ``n_objects`` when the space runs out. Voxel (z, y, x) belongs to a ball when its index is
    within the radius of the centre.
    """
    if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) > 1024**3:
        raise InvalidInputError(f"synthetic shape must be 3D, up to 1024^3 voxels, got {shape}")
    r_lo, r_hi = radius_voxels
    if not 0 < r_lo <= r_hi or n_objects < 0 or gap_voxels < 0:
        raise InvalidInputError("need 0 < min radius <= max radius, n_objects >= 0, gap >= 0")
    rng = np.random.default_rng(seed)
    size = np.asarray(shape, dtype=np.float64)
    room = None
    if mask is not None:
        if mask.shape != tuple(shape):
            raise InvalidInputError(f"the mask's shape {mask.shape} is not {tuple(shape)}")
        # Distance to the nearest voxel outside the mask: a ball fits when it exceeds the radius.
        room = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    centres = np.zeros((0, 3))
    radii = np.zeros(0)
    failed = 0
    while len(radii) < n_objects and failed < _MAX_FAILED_ROUNDS:
        r = float(rng.uniform(r_lo, r_hi))
        margin = r + 1.0
        if np.any(size - 2 * margin <= 0):
            break
        candidates = rng.uniform(margin, size - margin, (_CANDIDATES, 3))
        distance = np.linalg.norm(candidates[:, None, :] - centres[None, :, :], axis=2)
        ok = (distance > (r + radii + gap_voxels)[None, :]).all(axis=1)
        if room is not None:
            at = tuple(np.rint(candidates).astype(np.int64).T)
            ok &= room[at] > r + 1.0
        good = np.flatnonzero(ok)
        if not len(good):
            failed += 1
            continue
        failed = 0
        centres = np.vstack([centres, candidates[good[0]]])
        radii = np.append(radii, r)
    labels = np.zeros(shape, dtype=np.uint32)
    for index, (centre, r) in enumerate(zip(centres, radii, strict=True), start=1):
        lo = np.maximum(np.ceil(centre - r).astype(int), 0)
        hi = np.minimum(np.floor(centre + r).astype(int) + 1, shape)
        axes = [np.arange(lo[i], hi[i]) - centre[i] for i in range(3)]
        inside = (
            axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        ) <= r * r
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        labels[box][inside] = index
    return labels, centres, radii


@dataclass(frozen=True)
class MultiTaskImage:
    """A synthetic three-channel 2D section for several heads at once (see
    :func:`make_multitask_image`): ``image`` is (3, y, x) float32, channels first."""

    image: npt.NDArray[np.float32]
    nuclei: npt.NDArray[np.uint32]  # instance labels of every nucleus
    masks: dict[str, npt.NDArray[np.uint8]]  # semantic masks: glomerulus, podocyte


def make_multitask_image(
    shape: tuple[int, int] = (96, 96),
    *,
    n_glomeruli: int = 2,
    n_nuclei: int = 30,
    seed: int = 0,
) -> MultiTaskImage:
    """A section like the kidney podometrics study's: a nuclear stain (channel 0, every
    nucleus), a glomerular stain (channel 1, large discs) and a podocyte marker (channel 2,
    only the nuclei inside a glomerulus), with blur and Gaussian noise; true nuclei labels and
    the two semantic masks (glomerulus, podocyte nuclei)."""
    if len(shape) != 2 or min(shape) < 32:
        raise InvalidInputError(f"the multi-task image is 2D, at least 32 x 32, got {shape}")
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape, dtype=np.float64)
    glomerulus = np.zeros(shape, dtype=bool)
    r_glom = min(shape) / 5.0
    for _ in range(n_glomeruli):
        cy, cx = (rng.uniform(r_glom, n - r_glom) for n in shape)
        glomerulus |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r_glom**2
    nuclei = np.zeros(shape, dtype=np.uint32)
    placed: list[tuple[float, float, float]] = []
    for _ in range(50 * n_nuclei):  # random sequential addition of disjoint discs
        if len(placed) == n_nuclei:
            break
        r = float(rng.uniform(3.0, 4.5))
        cy, cx = (float(rng.uniform(r + 1, n - r - 1)) for n in shape)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (r + q + 1.0) ** 2 for y, x, q in placed):
            placed.append((cy, cx, r))
            nuclei[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = len(placed)
    inside = np.zeros(int(nuclei.max()) + 1, dtype=bool)
    for k in range(1, inside.size):
        inside[k] = glomerulus[nuclei == k].mean() > 0.5
    podocyte = inside[nuclei] & (nuclei > 0)
    channels = [
        (nuclei > 0).astype(np.float64),
        glomerulus.astype(np.float64) * 0.7,
        podocyte.astype(np.float64),
    ]
    image = np.stack(
        [ndimage.gaussian_filter(c, 1.0) + rng.normal(0.0, 0.08, shape) for c in channels]
    )
    return MultiTaskImage(
        image=image.astype(np.float32),
        nuclei=nuclei,
        masks={"glomerulus": glomerulus.astype(np.uint8), "podocyte": podocyte.astype(np.uint8)},
    )
