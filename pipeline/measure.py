"""The detections table of a label image: morphometrics of every object plus the filter's verdict.

Meshes and morphometrics come from :func:`pipeline.meshing.build_meshes`, which gathers voxel
counts, centroids and boxes block by block and merges them per id (objects spanning blocks are
measured whole) and takes the surface area from each object's mesh. This module adds the ``kept``
column (volume >= t_volume and sphericity >= t_sphericity; everything when no thresholds are
given) and writes ``detections.csv`` and ``detections.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import InvalidInputError
from pipeline.morphometrics import write_table
from pipeline.progress import ProgressCallback, no_progress
from pipeline.thresholds import detections_keep_mask

DETECTIONS_NAME = "detections"
MESHES_DIR = "meshes"
MORPHOMETRICS_CSV = "morphometrics.csv"


@dataclass(frozen=True)
class MeasureResult:
    """What :func:`measure_labels` wrote."""

    meshes_dir: Path
    detections_csv: Path
    detections_parquet: Path
    n_objects: int
    n_kept: int


def detections_table(
    morphometrics: pd.DataFrame, t_volume: float | None, t_sphericity: float | None
) -> pd.DataFrame:
    """The morphometrics with a boolean ``kept`` column (all True without thresholds)."""
    if (t_volume is None) != (t_sphericity is None):
        raise InvalidInputError("give both the volume and the sphericity threshold, or neither")
    table = morphometrics.copy()
    if t_volume is None or t_sphericity is None:
        table["kept"] = True
    else:
        table["kept"] = detections_keep_mask(table, t_volume, t_sphericity)
    return table


def write_detections(
    table: pd.DataFrame, out_dir: Path, t_volume: float | None, t_sphericity: float | None
) -> tuple[Path, Path]:
    """Write ``detections.csv``/``.parquet`` (with ``kept``) into ``out_dir``."""
    return write_table(detections_table(table, t_volume, t_sphericity), out_dir / DETECTIONS_NAME)


def measure_labels(
    labels_path: Path,
    out_dir: Path,
    *,
    t_volume: float | None = None,
    t_sphericity: float | None = None,
    simplify_ratio: float | None = None,
    probability_path: Path | None = None,
    progress: ProgressCallback = no_progress,
) -> MeasureResult:
    """Mesh and measure every object of a label image; write meshes and the detections table.

    With ``probability_path`` (the probability map the labels were segmented from), each
    object's mean probability joins the table and the meshes' segment properties."""
    from pipeline.meshing import DEFAULT_SIMPLIFY_RATIO, build_meshes

    if (t_volume is None) != (t_sphericity is None):
        raise InvalidInputError("give both the volume and the sphericity threshold, or neither")
    out_dir = Path(out_dir)
    meshes_dir = out_dir / MESHES_DIR
    build_meshes(
        Path(labels_path),
        meshes_dir,
        simplify_ratio=simplify_ratio if simplify_ratio is not None else DEFAULT_SIMPLIFY_RATIO,
        probability_path=probability_path,
        progress=progress,
    )
    morphometrics = pd.read_csv(meshes_dir / MORPHOMETRICS_CSV)
    table = detections_table(morphometrics, t_volume, t_sphericity)
    csv_path, parquet_path = write_table(table, out_dir / DETECTIONS_NAME)
    return MeasureResult(
        meshes_dir=meshes_dir,
        detections_csv=csv_path,
        detections_parquet=parquet_path,
        n_objects=len(table),
        n_kept=int(table["kept"].sum()),
    )


class FilteredLabels:
    """A read-only view of a label array in which only the ``kept`` ids remain (others read 0)."""

    def __init__(self, labels: Any, kept_ids: npt.ArrayLike) -> None:
        self._labels = labels
        self._kept = np.unique(np.asarray(kept_ids, dtype=np.uint64))
        self.shape: tuple[int, ...] = tuple(int(n) for n in labels.shape)
        self.dtype: Any = labels.dtype

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        block = np.asarray(self._labels[key])
        if block.size == 0:
            return block
        present = fastremap.unique(block)
        dropped = np.setdiff1d(present[present != 0], self._kept.astype(present.dtype))
        if dropped.size == 0:
            return block
        out: npt.NDArray[Any] = fastremap.mask(block, dropped.tolist(), in_place=False)
        return out
