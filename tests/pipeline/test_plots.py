"""Figures are written as real, non-blank PNGs; the CLI commands run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from pipeline import cli
from pipeline.errors import InvalidInputError
from pipeline.plots import TP_COLOUR, plot_metrics_per_box, plot_volume_sphericity

REPO = Path(__file__).parents[2]
C432 = REPO / "tests" / "data" / "segvoldata_c432"
TP_CSV = (
    C432 / "C432_XNH-eval-v10-segv1-18boxes_nuclei_true_positives_volumes_sphericities_vx.csv.gz"
)
FP_CSV = (
    C432 / "C432_XNH-eval-v10-segv1-18boxes_nuclei_false_positives_volumes_sphericities_vx.csv.gz"
)


def _colour_fraction(image: np.ndarray, hex_colour: str) -> float:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return float((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.06).mean())


def _check_png(path: Path, min_width: int) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 300
    assert image[..., :3].std() > 0.05  # not blank
    return image


def test_volume_sphericity_scatter(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tp = pd.DataFrame(
        {"volume": rng.lognormal(10, 0.3, 300), "sphericity": rng.normal(0.82, 0.04, 300)}
    )
    fp = pd.DataFrame({"volume": rng.lognormal(5, 2, 100), "sphericity": rng.normal(0.7, 0.2, 100)})
    path = plot_volume_sphericity(tp, fp, 11282.0, 0.4566, tmp_path / "scatter.png", title="C432")
    image = _check_png(path, 600)
    assert _colour_fraction(image, TP_COLOUR) > 0.002  # the true positives are drawn


def test_metric_bars(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "box": ["a", "b", "c"],
            "precision": [1.0, 0.5, 0.9],
            "recall": [0.8, 1.0, 0.2],
            "f1": [0.9, 0.7, 0.3],
        }
    )
    image = _check_png(plot_metrics_per_box(table, tmp_path / "bars.png"), 600)
    assert _colour_fraction(image, "#1f5fbf") > 0.005
    with pytest.raises(InvalidInputError, match="lacks columns recall"):
        plot_metrics_per_box(table.drop(columns="recall"), tmp_path / "x.png")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fit_thresholds_cli_reproduces_the_published_thresholds(tmp_path: Path) -> None:
    derived = pd.read_csv(C432 / "c432_detections_by_box.csv")
    derived = derived[derived["split"] == "validation"]
    derived[derived["label"] == "TP"].to_csv(tmp_path / "tp.csv", index=False)
    derived[derived["label"] == "FP"].to_csv(tmp_path / "fp.csv.gz", index=False)
    out = tmp_path / "fit"
    done = _cli(
        "fit-thresholds",
        "--tp",
        tmp_path / "tp.csv",
        "--fp",
        tmp_path / "fp.csv.gz",
        "--folds",
        "3",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    fitted = pd.read_csv(out / "thresholds_volume_sphericity.csv")
    published = pd.read_csv(C432 / "C432_XNH-v10-segv1_thresholds_volume_sphericity.csv")
    np.testing.assert_allclose(fitted.to_numpy(), published.to_numpy(), rtol=1e-12)
    summary = json.loads((out / "thresholds_summary.json").read_text())
    assert len(summary["folds"]) == 3 and summary["scores_all_detections"]["recall"] >= 0.8
    assert len(pd.read_csv(out / "filter_metrics_per_box.csv")) == 12
    for png in ("volume_sphericity.png", "filter_metrics_per_box.png"):
        _check_png(out / png, 600)


def _main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run the CLI's main in this process with only our subcommands registered (the others'
    imports cost seconds on a busy machine); the subprocess tests cover the full entry point."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "COMMAND_MODULES", ["fit_thresholds", "evaluate"])
        code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_fit_thresholds_cli_without_boxes_and_with_bad_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main(capsys, "fit-thresholds", "--tp", TP_CSV, "--fp", FP_CSV, "--out", tmp_path)
    assert code == 0 and "without folds" in err
    assert (tmp_path / "thresholds_volume_sphericity.csv").is_file()
    (tmp_path / "bad.csv").write_text("volumes,surfaces\n1,2\n")
    done = _cli(
        "fit-thresholds", "--tp", TP_CSV, "--fp", tmp_path / "bad.csv", "--out", tmp_path / "x"
    )
    assert done.returncode == 2 and "no sphericity column" in done.stderr
    (tmp_path / "empty.csv").write_text("volumes,sphericities\n")
    done = _cli(
        "fit-thresholds", "--tp", tmp_path / "empty.csv", "--fp", FP_CSV, "--out", tmp_path / "x"
    )
    assert done.returncode == 2 and "true-positive table is empty" in done.stderr


def test_evaluate_cli_on_npy_and_ome_zarr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pipeline.conftest import write_reference_ome_zarr

    gt = np.zeros((20, 40, 40), dtype=np.uint16)
    gt[4:10, 4:10, 4:10] = 1
    gt[4:10, 20:28, 20:28] = 2
    pred = gt.copy()
    pred[4:10, 30:34, 4:8] = 9  # spurious, inside box "a"
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    (tmp_path / "boxes.csv").write_text("name,x,y,z,w,h,d\na,0,0,0,40,40,20\nb,20,20,0,20,20,20\n")
    out = tmp_path / "eval"
    args = [
        "--pred",
        tmp_path / "pred.npy",
        "--gt",
        tmp_path / "gt.npy",
        "--boxes",
        tmp_path / "boxes.csv",
    ]
    done = _cli("evaluate", *args, "--voxel-size", "200", "100", "100", "--out", out)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "evaluation_per_box.csv")
    assert table[["tp", "fp", "fn"]].to_numpy().tolist() == [[2, 1, 0], [1, 0, 0]]
    summary = json.loads((out / "evaluation_summary.json").read_text())
    assert summary["aggregate"]["precision"] == pytest.approx(3 / 4)
    _check_png(out / "evaluation_per_box.png", 500)
    # .npy carries no voxel size: asked for, exit code 2.
    code, err = _main(capsys, "evaluate", *args, "--out", tmp_path / "x")
    assert code == 2 and "--voxel-size" in err
    # OME-Zarr label images: the voxel size (um in the metadata) is read from the store.
    store = write_reference_ome_zarr(
        tmp_path / "img.ome.zarr",
        np.zeros(gt.shape, dtype=np.uint8),
        {"gt": gt, "pred": pred},
        version="0.5",
        scale={"z": 0.2, "y": 0.1, "x": 0.1},
    )
    done = _cli(
        "evaluate",
        "--pred",
        store / "labels/pred",
        "--gt",
        store / "labels/gt",
        "--boxes",
        tmp_path / "boxes.csv",
        "--out",
        tmp_path / "z",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "z" / "evaluation_summary.json").read_text())
    assert summary["parameters"]["voxel_size_nm"] == pytest.approx([200.0, 100.0, 100.0])
    assert summary["aggregate"]["tp"] == 3
