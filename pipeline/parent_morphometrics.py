"""Per-parent morphometrics: objects of one label image (children) inside those of another.

Podocyte nuclei inside glomeruli, nuclei inside a region: per parent, the number of children,
their density per parent area (2D) or volume (3D), the children's sizes, the nearest-neighbour
distances between the children's centroids (physical units, ``scipy.spatial.cKDTree``) and the
parent's size; per subject (one pair of label images), a signature of each measure across parents.

Assignment: each child belongs to the parent holding most of its voxels (ties: the smaller parent
id), so a child straddling two parents is counted once. A child with no voxel in any parent, or
less than ``min_inside_fraction`` of them in its best parent, is *outside*: listed separately and
counted nowhere. A child is measured whole (its size includes voxels outside the parent), while
the children's area or volume *fraction* of a parent counts only its assigned children's voxels
inside it (Delesse).
Nearest-neighbour distances are between children of the same parent; with fewer than two children
a parent has none (NaN), and so does an only child in the children table.

2D sections (a 2D image, or a 3D one with a single plane) see profiles, not objects. Two
model-based estimates turn the profile density N_A (profiles per um^2 of parent) into a number
per volume N_V (``SectionModel.method``):

- ``abercrombie`` (default): N_V = N_A / (D + t) (Abercrombie 1946, Anat Rec 94:239), t the
  section thickness, D the children's mean caliper diameter perpendicular to the section: a
  section of thickness t shows every child whose centre lies within a slab t + D thick. It is the
  single-section podocyte estimator of Venkatareddy et al. (2014, J Am Soc Nephrol 25:1118),
  written there as the correction factor CF = 1 / (D / t + 1). D is given
  (``caliper_diameter_um``, e.g. measured on thick sections, as that study recommends) or
  estimated from the profiles themselves under a sphere model: equal spheres of diameter D seen
  in projection through a section of thickness t show profiles of mean diameter
  d = D (t + pi D / 4) / (t + D) (whole diameter when the centre lies inside the slab, a cap's
  circle of mean diameter pi D / 4 otherwise; with t = 0 this is the classic d = pi D / 4), solved
  for D with d the mean equivalent-circle diameter of the subject's assigned profiles (one D per
  subject: a parent's handful of profiles is too few to estimate a size from).
- ``weibel-gomez``: N_V = (K / beta) N_A^(3/2) / V_V^(1/2) (Weibel and Gomez 1962, J Appl
  Physiol 17:343), V_V = A_A the children's area fraction of the parent (Delesse), beta the shape
  coefficient (sqrt(6 / pi) = 1.382 for spheres), K the size distribution coefficient (1 for
  equal sizes, about 1.01-1.1 for real ones).

Abercrombie is the default because it takes the section thickness into account, which matters for
nuclei in histology (3-5 um sections against 5-10 um nuclei: ignoring it would overestimate N_V
by half or more), needs no shape coefficient when D is measured, and is the correction the
single-section podometrics method uses; Weibel-Gomez assumes sections thin against the particles
and, through N_A^(3/2) on a handful of profiles per parent, amplifies their counting noise. The
thickness must be given for 2D input (there is no safe default). With ``none`` only the 2D
figures are reported.

The 3D number of children per parent is then N_V times the parent's volume, itself estimated from
its profile area A by Weibel-Gomez for the parent: V = (beta_p / k_p) A^(3/2) (beta_p = 1.382,
spheres; k_p about 1.01-1.1 for glomeruli), exact on average over random sections of equal
spheres (the mean profile area is 2/3 of the equatorial one), an estimate for a single profile.

The per-subject signature gives, for each numeric per-parent measure, the number of parents with a
value, minimum, maximum, mean, median and sample variance (ddof 1: NaN for one parent), ignoring
NaN (e.g. nearest-neighbour distances of parents with fewer than two children).

The voxel data are read block by block (:func:`pipeline.morphometrics.label_stats` for sizes and
centroids, one more pass for the child/parent overlaps), so memory holds a block and one row per
object or overlapping pair, not the images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial import cKDTree

from pipeline.errors import InvalidInputError
from pipeline.morphometrics import LabelArray, LabelStats, block_shape_of, iter_blocks, label_stats
from pipeline.morphometrics import write_table as _write_table
from pipeline.progress import ProgressCallback, no_progress

STEREOLOGY_METHODS: tuple[str, ...] = ("abercrombie", "weibel-gomez", "none")
DEFAULT_STEREOLOGY = "abercrombie"
#: Weibel-Gomez shape coefficient of a sphere, sqrt(6 / pi).
SPHERE_SHAPE_COEFFICIENT = math.sqrt(6.0 / math.pi)
SIGNATURE_STATISTICS: tuple[str, ...] = ("n", "min", "max", "mean", "median", "variance")
TABLE_NAMES: tuple[str, ...] = ("parents", "children", "outside_children", "signature")


@dataclass(frozen=True)
class SectionModel:
    """How counts on a 2D section become 3D estimates; see the module docstring."""

    method: str = DEFAULT_STEREOLOGY
    thickness_um: float | None = None
    #: Children's mean caliper diameter D (um); None: estimated from the profiles (spheres).
    caliper_diameter_um: float | None = None
    child_shape_coefficient: float = SPHERE_SHAPE_COEFFICIENT
    child_size_coefficient: float = 1.0
    parent_shape_coefficient: float = SPHERE_SHAPE_COEFFICIENT
    parent_size_coefficient: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in STEREOLOGY_METHODS:
            raise InvalidInputError(
                f"stereology method {self.method!r} is not one of {', '.join(STEREOLOGY_METHODS)}"
            )
        for name in (
            "child_shape_coefficient",
            "child_size_coefficient",
            "parent_shape_coefficient",
            "parent_size_coefficient",
        ):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be positive, not {getattr(self, name)}")
        if self.thickness_um is not None and not self.thickness_um >= 0:
            raise InvalidInputError(f"section thickness must be >= 0 um, not {self.thickness_um}")
        if self.caliper_diameter_um is not None and not self.caliper_diameter_um > 0:
            raise InvalidInputError(
                f"caliper diameter must be positive, not {self.caliper_diameter_um}"
            )


@dataclass(frozen=True)
class ParentMorphometrics:
    """The tables of one subject: per parent, per child, outside children, and the signature."""

    dims: int
    parents: pd.DataFrame
    children: pd.DataFrame
    outside_children: pd.DataFrame
    signature: pd.DataFrame
    #: D used by the Abercrombie correction (um), given or estimated; None otherwise.
    caliper_diameter_um: float | None = None


def caliper_diameter_from_profiles(mean_profile_diameter: float, thickness: float) -> float:
    """D of equal spheres whose projected profiles through a section ``thickness`` thick have
    mean diameter ``mean_profile_diameter``: the root of (pi/4) D^2 + (t - d) D - d t = 0."""
    d, t = float(mean_profile_diameter), float(thickness)
    if not d > 0:
        return float("nan")
    b = t - d
    return (-b + math.sqrt(b * b + math.pi * d * t)) / (math.pi / 2.0)


def abercrombie_density(n_per_area: float, caliper_diameter: float, thickness: float) -> float:
    """N_V = N_A / (D + t) (Abercrombie 1946)."""
    return n_per_area / (caliper_diameter + thickness)


def weibel_gomez_density(
    n_per_area: float, area_fraction: float, shape: float, size: float = 1.0
) -> float:
    """N_V = (K / beta) N_A^(3/2) / V_V^(1/2) (Weibel and Gomez 1962); 0 without profiles."""
    if n_per_area <= 0 or area_fraction <= 0:
        return 0.0
    return float(size / shape * n_per_area**1.5 / math.sqrt(area_fraction))


def weibel_gomez_volume(area: float, shape: float, size: float = 1.0) -> float:
    """V = (beta / k) A^(3/2): a particle's volume from its profile area (Weibel 1979)."""
    return float(shape / size * area**1.5)


class _Planes:
    """A 2D label array seen as 3D with one plane, so the 3D block readers apply."""

    def __init__(self, array: LabelArray) -> None:
        self._array = array
        self.shape: tuple[int, ...] = (1, *(int(n) for n in array.shape))

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self._array[key[1:]])[None]


PLANE_BLOCK_EDGE = 1024  # a section is read in blocks of about 1024^2 pixels (4 MB of uint32)


def _as_3d(array: LabelArray) -> tuple[LabelArray, tuple[int, ...]]:
    """The array as (z, y, x) and the block shape to read it with: its chunks (or shards), and
    for a section whole chunks adding up to about ``PLANE_BLOCK_EDGE`` per side, as its chunks
    are small against the per-block overhead."""
    shape = tuple(int(n) for n in array.shape)
    if len(shape) not in (2, 3):
        raise InvalidInputError(f"label images must be 2D or 3D, not of shape {shape}")
    natural = block_shape_of(array)
    if len(shape) == 3 and shape[0] > 1:
        return array, natural
    plane = natural[-2:]
    grown = tuple(-(-PLANE_BLOCK_EDGE // b) * b for b in plane)
    return (_Planes(array) if len(shape) == 2 else array), (1, *grown)


def _renamed(progress: ProgressCallback, name: str) -> ProgressCallback:
    """``progress`` with every report under the stage ``name``."""

    def report(stage: str, done: int, total: int) -> None:
        progress(name, done, total)

    return report


def overlap_counts(
    children: LabelArray,
    parents: LabelArray,
    block_shape: Sequence[int],
    progress: ProgressCallback = no_progress,
) -> pd.DataFrame:
    """Voxels shared by each child and each parent (parent 0: outside every parent), block by
    block: columns ``child_id``, ``parent_id``, ``voxels``."""
    shape = tuple(int(n) for n in children.shape)
    blocks = list(iter_blocks(shape, block_shape))
    parts: list[pd.DataFrame] = []
    for done, slices in enumerate(blocks, start=1):
        child = np.asarray(children[slices]).ravel()
        parent = np.asarray(parents[slices]).ravel()
        for name, block in (("child", child), ("parent", parent)):
            if block.dtype.kind not in "ui":
                raise InvalidInputError(f"the {name} labels must hold integers, not {block.dtype}")
        inside = child != 0
        if inside.any():
            child_ids, child_index = np.unique(child[inside], return_inverse=True)
            parent_ids, parent_index = np.unique(parent[inside], return_inverse=True)
            key = child_index.astype(np.int64) * len(parent_ids) + parent_index
            keys, counts = np.unique(key, return_counts=True)
            parts.append(
                pd.DataFrame(
                    {
                        "child_id": child_ids[keys // len(parent_ids)].astype(np.int64),
                        "parent_id": parent_ids[keys % len(parent_ids)].astype(np.int64),
                        "voxels": counts.astype(np.int64),
                    }
                )
            )
        progress("overlaps", done, len(blocks))
    if not parts:
        return pd.DataFrame({"child_id": [], "parent_id": [], "voxels": []}, dtype=np.int64)
    merged = pd.concat(parts, ignore_index=True)
    return merged.groupby(["child_id", "parent_id"], as_index=False, sort=True)["voxels"].sum()


def assign_children(
    overlaps: pd.DataFrame, child_voxels: pd.Series, min_inside_fraction: float = 0.0
) -> pd.DataFrame:
    """Per child (index of ``child_voxels``): ``parent_id`` (0: outside), ``inside_voxels`` (its
    voxels in that parent) and ``inside_fraction``. The parent holding most voxels wins; ties go
    to the smaller id."""
    inside = overlaps[overlaps["parent_id"] != 0]
    best = inside.sort_values(["child_id", "voxels", "parent_id"], ascending=[True, False, True])
    best = best.drop_duplicates("child_id").set_index("child_id")
    table = pd.DataFrame(index=child_voxels.index)
    table["parent_id"] = best["parent_id"].reindex(table.index).fillna(0).astype(np.int64)
    table["inside_voxels"] = best["voxels"].reindex(table.index).fillna(0).astype(np.int64)
    table["inside_fraction"] = table["inside_voxels"] / child_voxels.astype(np.float64)
    too_little = (table["parent_id"] != 0) & (table["inside_fraction"] < min_inside_fraction)
    table.loc[too_little, ["parent_id", "inside_voxels"]] = 0
    table.loc[too_little, "inside_fraction"] = 0.0
    return table


def label_components(mask: LabelArray) -> npt.NDArray[np.uint32]:
    """The objects of a semantic mask (non-zero: inside), e.g. a glomerulus head's output:
    connected components (26-connected in 3D, 8 in 2D) numbered 1..N. Reads the whole mask."""
    data = np.asarray(mask[...])
    if data.ndim not in (2, 3):
        raise InvalidInputError(f"a mask must be 2D or 3D, not of shape {data.shape}")
    labelled = cc3d.connected_components(data != 0, connectivity=26 if data.ndim == 3 else 8)
    return np.asarray(labelled, dtype=np.uint32)


def nearest_neighbour_distances(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Distance from each point to its nearest other point (NaN when there is no other)."""
    if len(points) < 2:
        return np.full(len(points), np.nan)
    distances, _ = cKDTree(points).query(points, k=2)
    return np.asarray(distances[:, 1], dtype=np.float64)


def _stats_frame(stats: LabelStats) -> pd.DataFrame:
    frame = pd.DataFrame(stats.centroids, columns=["cz", "cy", "cx"])
    frame.index = pd.Index(stats.ids.astype(np.int64), name="id")
    frame["voxels"] = stats.voxels
    return frame


def _equivalent_diameter(size: npt.NDArray[np.float64] | pd.Series, dims: int) -> Any:
    if dims == 2:
        return np.sqrt(4.0 * np.asarray(size, dtype=np.float64) / math.pi)
    return np.cbrt(6.0 * np.asarray(size, dtype=np.float64) / math.pi)


def subject_signature(parents: pd.DataFrame, subject: str = "") -> pd.DataFrame:
    """One row per numeric per-parent measure: ``SIGNATURE_STATISTICS`` across parents."""
    measures = [
        c
        for c in parents.columns
        if c not in ("parent_id", "parent_voxels") and pd.api.types.is_numeric_dtype(parents[c])
    ]
    rows = []
    for measure in measures:
        values = parents[measure].astype(np.float64).dropna()
        rows.append(
            {
                "subject": subject,
                "measure": measure,
                "n": len(values),
                "min": float(values.min()) if len(values) else np.nan,
                "max": float(values.max()) if len(values) else np.nan,
                "mean": float(values.mean()) if len(values) else np.nan,
                "median": float(values.median()) if len(values) else np.nan,
                "variance": float(values.var(ddof=1)) if len(values) > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["subject", "measure", *SIGNATURE_STATISTICS])


def parent_morphometrics(
    children: LabelArray,
    parents: LabelArray,
    voxel_size_um: Sequence[float],
    *,
    section: SectionModel | None = None,
    min_inside_fraction: float = 0.0,
    subject: str = "",
    block_shape: Sequence[int] | None = None,
    progress: ProgressCallback = no_progress,
) -> ParentMorphometrics:
    """Measure the children of every parent; see the module docstring.

    ``children`` and ``parents`` are label images on the same grid, 2D (y, x) or 3D (z, y, x);
    ``voxel_size_um`` has one value per axis. A 3D image with one plane is a 2D section.
    ``section`` (2D only) chooses the stereology; 2D input with Abercrombie needs its thickness.
    """
    section = section or SectionModel()
    shape = tuple(int(n) for n in children.shape)
    if tuple(int(n) for n in parents.shape) != shape:
        raise InvalidInputError(
            f"the child labels have shape {shape}, the parent labels "
            f"{tuple(int(n) for n in parents.shape)}: they must lie on the same grid"
        )
    voxel = tuple(float(v) for v in voxel_size_um)
    if len(voxel) != len(shape) or any(not v > 0 for v in voxel):
        raise InvalidInputError(
            f"the voxel size needs {len(shape)} positive values for shape {shape}, got {voxel}"
        )
    if not 0.0 <= min_inside_fraction <= 1.0:
        raise InvalidInputError(f"min_inside_fraction must be in [0, 1], not {min_inside_fraction}")
    dims = 2 if len(shape) == 2 or shape[0] == 1 else 3
    if dims == 2 and section.method == "abercrombie" and section.thickness_um is None:
        raise InvalidInputError(
            "a 2D section needs its thickness for the Abercrombie correction: give the section "
            "thickness in um (or choose the weibel-gomez or none stereology)"
        )
    if len(shape) == 2:
        voxel = (1.0, *voxel)
    child3, block = _as_3d(children)
    parent3, _ = _as_3d(parents)
    if block_shape is not None:
        given = tuple(int(b) for b in block_shape)
        block = (1, *given) if len(given) == 2 else given
    child_stats = _stats_frame(label_stats(child3, block, _renamed(progress, "measuring children")))
    parent_stats = _stats_frame(
        label_stats(parent3, block, _renamed(progress, "measuring parents"))
    )
    overlaps = overlap_counts(child3, parent3, block, progress)

    size_name, size_unit = ("area", "um2") if dims == 2 else ("volume", "um3")
    element = voxel[1] * voxel[2] if dims == 2 else voxel[0] * voxel[1] * voxel[2]
    scale = np.asarray(voxel, dtype=np.float64)
    axes = "yx" if dims == 2 else "zyx"

    assignment = assign_children(overlaps, child_stats["voxels"], min_inside_fraction)
    kids = pd.DataFrame(index=child_stats.index)
    kids["parent_id"] = assignment["parent_id"]
    kids["inside_fraction"] = assignment["inside_fraction"]
    kids["voxels"] = child_stats["voxels"].astype(np.int64)
    kids[f"{size_name}_{size_unit}"] = kids["voxels"] * element
    kids["equivalent_diameter_um"] = _equivalent_diameter(kids[f"{size_name}_{size_unit}"], dims)
    centroids_um = child_stats[["cz", "cy", "cx"]].to_numpy() * scale
    for axis in axes:
        kids[f"centroid_{axis}_um"] = centroids_um[:, "zyx".index(axis)]
    kids["nn_distance_um"] = np.nan
    coordinates = [f"centroid_{a}_um" for a in axes]
    for _, group in kids[kids["parent_id"] != 0].groupby("parent_id"):
        kids.loc[group.index, "nn_distance_um"] = nearest_neighbour_distances(
            group[coordinates].to_numpy(dtype=np.float64)
        )
    inside_voxels = assignment["inside_voxels"]
    kids = kids.rename_axis("child_id").reset_index()

    table = pd.DataFrame(index=parent_stats.index.rename("parent_id"))
    table["parent_voxels"] = parent_stats["voxels"].astype(np.int64)
    table[f"parent_{size_name}_{size_unit}"] = table["parent_voxels"] * element
    table["parent_equivalent_diameter_um"] = _equivalent_diameter(
        table[f"parent_{size_name}_{size_unit}"], dims
    )
    assigned = kids[kids["parent_id"] != 0].groupby("parent_id")
    table["n_children"] = assigned.size().reindex(table.index).fillna(0).astype(np.int64)
    table[f"child_density_per_{size_unit}"] = (
        table["n_children"] / table[f"parent_{size_name}_{size_unit}"]
    )
    inside_sum = inside_voxels.groupby(assignment["parent_id"]).sum()
    table[f"child_{size_name}_fraction"] = (
        inside_sum.reindex(table.index).fillna(0) / table["parent_voxels"]
    )
    size_col = f"{size_name}_{size_unit}"
    per_parent: dict[str, tuple[str, str | Callable[[pd.Series], float]]] = {
        f"child_{size_name}_mean_{size_unit}": (size_col, "mean"),
        f"child_{size_name}_median_{size_unit}": (size_col, "median"),
        "child_equivalent_diameter_mean_um": ("equivalent_diameter_um", "mean"),
        "nn_distance_mean_um": ("nn_distance_um", "mean"),
        "nn_distance_median_um": ("nn_distance_um", "median"),
        "nn_distance_min_um": ("nn_distance_um", "min"),
    }
    for column, (source, how) in per_parent.items():
        table[column] = assigned[source].agg(how).reindex(table.index).astype(np.float64)

    caliper = None
    if dims == 2 and section.method != "none":
        n_a = table["child_density_per_um2"].to_numpy(dtype=np.float64)
        if section.method == "abercrombie":
            thickness = float(section.thickness_um or 0.0)
            caliper = section.caliper_diameter_um
            if caliper is None:
                profiles = kids.loc[kids["parent_id"] != 0, "equivalent_diameter_um"]
                caliper = (
                    caliper_diameter_from_profiles(float(profiles.mean()), thickness)
                    if len(profiles)
                    else float("nan")
                )
            # A parent without profiles has N_V = 0 even when D is unknown (no profile at all).
            n_v = np.array(
                [abercrombie_density(x, caliper, thickness) if x > 0 else 0.0 for x in n_a]
            )
        else:
            fraction = table["child_area_fraction"].to_numpy(dtype=np.float64)
            n_v = np.array(
                [
                    weibel_gomez_density(
                        x, f, section.child_shape_coefficient, section.child_size_coefficient
                    )
                    for x, f in zip(n_a, fraction, strict=True)
                ]
            )
        table["child_density_est_per_um3"] = n_v
        table["parent_volume_est_um3"] = [
            weibel_gomez_volume(
                a, section.parent_shape_coefficient, section.parent_size_coefficient
            )
            for a in table["parent_area_um2"].to_numpy(dtype=np.float64)
        ]
        table["n_children_est"] = (
            table["child_density_est_per_um3"] * table["parent_volume_est_um3"]
        )
    table = table.reset_index()
    outside = kids[kids["parent_id"] == 0].drop(
        columns=["parent_id", "inside_fraction", "nn_distance_um"]
    )
    return ParentMorphometrics(
        dims=dims,
        parents=table,
        children=kids,
        outside_children=outside.reset_index(drop=True),
        signature=subject_signature(table, subject),
        caliper_diameter_um=caliper,
    )


def write_parent_tables(result: ParentMorphometrics, out_dir: Path) -> list[Path]:
    """``parents``, ``children``, ``outside_children`` and ``signature`` as CSV and Parquet."""
    paths: list[Path] = []
    for name in TABLE_NAMES:
        paths.extend(_write_table(getattr(result, name), Path(out_dir) / name))
    return paths
