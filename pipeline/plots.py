"""Figures of the filter and the evaluation, written as PNG files.

Figures are built with matplotlib's object API (``Figure``, rendered by Agg): no pyplot, so no
global state, no display needed and safe in worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.errors import InvalidInputError

TP_COLOUR = "#1f5fbf"
FP_COLOUR = "#f08a00"
ALL_COLOUR = "#9fb8c8"
METRIC_COLOURS = {"precision": "#1f5fbf", "recall": "#f08a00", "f1": "#3a3a3a"}


def plot_volume_sphericity(
    tp: pd.DataFrame,
    fp: pd.DataFrame,
    t_volume: float,
    t_sphericity: float,
    path: Path,
    *,
    all_objects: pd.DataFrame | None = None,
    volume_unit: str = "voxels",
    title: str | None = None,
) -> Path:
    """Scatter of volume (log) against sphericity, TP and FP coloured, thresholds drawn.

    Each table needs ``volume`` and ``sphericity`` columns; ``all_objects`` is drawn beneath.
    """
    fig = Figure(figsize=(6.0, 4.8), dpi=120)
    ax = fig.add_subplot()
    if all_objects is not None and len(all_objects):
        ax.scatter(
            all_objects["volume"], all_objects["sphericity"], s=3, c=ALL_COLOUR,
            alpha=0.4, label=f"all ({len(all_objects)})", rasterized=True, linewidths=0,
        )  # fmt: skip
    for df, colour, name in ((tp, TP_COLOUR, "true positive"), (fp, FP_COLOUR, "false positive")):
        ax.scatter(
            df["volume"], df["sphericity"], s=9, c=colour, alpha=0.75,
            label=f"{name} ({len(df)})", linewidths=0,
        )  # fmt: skip
    ax.axvline(t_volume, color="black", linestyle="-.", linewidth=1.2)
    ax.axhline(t_sphericity, color="black", linestyle="-.", linewidth=1.2)
    ax.axhline(1.0, color="dimgray", linestyle=":", linewidth=1.0)
    ax.set_xscale("log")
    ax.set_xlabel(f"volume ({volume_unit})")
    ax.set_ylabel("sphericity")
    ax.text(
        t_volume * 1.08, 0.02, f"volume ≥ {t_volume:,.0f}", rotation=90,
        transform=ax.get_xaxis_transform(), va="bottom", fontsize=8,
    )  # fmt: skip
    ax.text(
        0.01, t_sphericity + 0.02, f"sphericity ≥ {t_sphericity:.3f}",
        transform=ax.get_yaxis_transform(), fontsize=8,
    )  # fmt: skip
    values = pd.concat([tp["sphericity"], fp["sphericity"]])
    top = max(1.2, float(np.nanpercentile(values, 99.5)) * 1.05) if len(values) else 1.2
    ax.set_ylim(0, top)
    ax.legend(loc="upper right", fontsize=8, frameon=True, scatterpoints=1, markerscale=1.5)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_metrics_per_box(
    table: pd.DataFrame,
    path: Path,
    *,
    metrics: Sequence[str] = ("precision", "recall", "f1"),
    box_column: str = "box",
    title: str | None = None,
) -> Path:
    """Grouped bars of per-box metrics (one group per box, one bar per metric)."""
    if table.empty:
        raise InvalidInputError("no boxes to plot")
    missing = [c for c in (box_column, *metrics) if c not in table.columns]
    if missing:
        raise InvalidInputError(f"the metrics table lacks columns {', '.join(missing)}")
    n = len(table)
    width = 0.8 / len(metrics)
    x = np.arange(n)
    fig = Figure(figsize=(max(5.0, 0.55 * n + 2.0), 4.0), dpi=120)
    ax = fig.add_subplot()
    for k, metric in enumerate(metrics):
        ax.bar(
            x + (k - (len(metrics) - 1) / 2) * width, table[metric].to_numpy(dtype=float),
            width, label=metric, color=METRIC_COLOURS.get(metric),
        )  # fmt: skip
    ax.set_xticks(x, table[box_column].astype(str), rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.axhline(1.0, color="lightgray", linewidth=0.8, zorder=0)
    ax.legend(
            loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, ncols=len(metrics),
            frameon=False,
        )  # fmt: skip
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10, pad=20)  # room for the legend above
    fig.tight_layout()
    fig.savefig(path)
    return path
