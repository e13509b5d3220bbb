"""Proofreading statistics on the command line: agreement, disector plan/estimate, verdict fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import cli
from pipeline.stereology import DisectorPlan

REPO = Path(__file__).resolve().parents[2]


def _main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verdicts(path: Path) -> Path:
    rows = []
    for d in range(6):
        votes = ["tp", "fp", "uncertain"] if d % 3 == 0 else ["tp", "tp", "tp"]
        for reviewer, verdict in zip("abc", votes, strict=True):
            rows.append({"detection_id": d, "reviewer": reviewer, "verdict": verdict})
    rows.append({"detection_id": 0, "reviewer": "e", "verdict": "fp", "round": 2})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_agreement_prints_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    verdicts = _verdicts(tmp_path / "verdicts.csv")
    code, out, _ = _main(capsys, "agreement", verdicts, "--out", tmp_path / "out")
    assert code == 0
    assert "quorum 3" in out
    assert "5 decided, 1 for the second round, 0 pending" in out
    assert "Fleiss' kappa" in out and "Cohen's kappa per pair" in out
    summary = json.loads((tmp_path / "out" / "agreement_summary.json").read_text())
    assert summary["second_round"] == [3]
    assert summary["verdict_counts"] == {"fp": 1, "tp": 4}
    consensus = pd.read_csv(tmp_path / "out" / "consensus.csv")
    assert consensus.set_index("detection_id").loc[0, "source"] == "expert"
    pairs = pd.read_csv(tmp_path / "out" / "kappa_pairs.csv")
    assert len(pairs) == 3


def test_agreement_reports_bad_input_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.csv").write_text("detection_id,verdict\n1,tp\n")
    code, _, err = _main(capsys, "agreement", tmp_path / "bad.csv")
    assert code == 2 and "no reviewer column" in err
    code, _, err = _main(capsys, "agreement", tmp_path / "missing.csv")
    assert code == 2 and "does not exist" in err


def test_disector_plan_then_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_json = tmp_path / "plan.json"
    code, out, _ = _main(capsys, "disector", "plan", "--shape", 100, 50, 50, "--voxel-size",
                         10000, "--pairs", 5, "--seed", 1, "--out", plan_json)  # fmt: skip
    assert code == 0 and "5 disector pairs along axis z, h = 50 um" in out
    plan = DisectorPlan.from_dict(json.loads(plan_json.read_text()))
    assert len(plan.pairs) == 5
    assert len(pd.read_csv(tmp_path / "plan.csv")) == 5
    counts = pd.DataFrame(
        {
            "pair": [0, 1, 2, 3, 4, 0, 1],
            "reviewer": ["a"] * 5 + ["b"] * 2,
            "q_minus": [5, 6, 4, 5, 7, 5, 5],
            "matched": [4, 5, 4, 4, 6, 4, 4],
        }
    )
    counts.to_csv(tmp_path / "counts.csv", index=False)
    code, out, _ = _main(capsys, "disector", "estimate", "--plan", plan_json, "--counts",
                         tmp_path / "counts.csv", "--detections", 100, "--out",
                         tmp_path / "est.csv")  # fmt: skip
    assert code == 0
    assert "reviewer a: 5 pairs, Q- 27" in out and "reviewer b: 2 pairs" in out
    assert "pooled: 5 pairs" in out and "sampled miss rate" in out
    table = pd.read_csv(tmp_path / "est.csv")
    assert table["reviewer"].isna().tolist() == [False, False, True]
    # Nv = 27 / (50 um * 5 * 250,000 um^2); N = Nv * 0.25 mm^3 = 108.
    assert table.loc[0, "n_total"] == pytest.approx(108.0)


def test_disector_plan_from_a_mask_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.zeros((60, 20, 20), dtype=np.uint8)
    mask[10:50, 5:15, 5:15] = 1
    np.save(tmp_path / "mask.npy", mask)
    code, _, _ = _main(capsys, "disector", "plan", "--mask", tmp_path / "mask.npy",
                         "--voxel-size", 5000, "--pairs", 4, "--h-um", 20, "--seed", 0,
                         "--out", tmp_path / "plan.json")  # fmt: skip
    assert code == 0
    plan = DisectorPlan.from_dict(json.loads((tmp_path / "plan.json").read_text()))
    assert plan.masked and plan.sampled_range == (10, 50) and plan.h_voxels == 4
    assert all(p.reference_area_um2 == pytest.approx(100 * 25) for p in plan.pairs)
    code, _, err = _main(capsys, "disector", "plan", "--mask", tmp_path / "mask.npy",
                         "--pairs", 4, "--out", tmp_path / "p.json")  # fmt: skip
    assert code == 2 and "voxel size is unknown" in err


def test_disector_estimate_refuses_bad_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(capsys, "disector", "plan", "--shape", 40, 8, 8, "--voxel-size", 10000, "--pairs", 2,
          "--out", tmp_path / "plan.json")  # fmt: skip
    (tmp_path / "counts.csv").write_text("pair,q_minus\n7,3\n")
    code, _, err = _main(capsys, "disector", "estimate", "--plan", tmp_path / "plan.json",
                         "--counts", tmp_path / "counts.csv")  # fmt: skip
    assert code == 2 and "not in the plan" in err
    (tmp_path / "plan.json").write_text("{}")
    code, _, err = _main(capsys, "disector", "estimate", "--plan", tmp_path / "plan.json",
                         "--counts", tmp_path / "counts.csv")  # fmt: skip
    assert code == 2 and "not a disector plan" in err


def test_fit_thresholds_from_a_verdicts_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    n = 300
    is_tp = rng.random(n) < 0.7
    verdict = np.where(is_tp, rng.choice(["tp", "tp_distortion"], n), "fp")
    verdict[rng.random(n) < 0.05] = "uncertain"
    pd.DataFrame(
        {
            "volume": np.where(is_tp, rng.uniform(100, 200, n), rng.uniform(10, 120, n)),
            "sphericity": np.where(is_tp, rng.uniform(0.7, 0.95, n), rng.uniform(0.3, 0.9, n)),
            "verdict": verdict,
            "centroid_z": rng.uniform(0, 100, n),
            "centroid_y": rng.uniform(0, 100, n),
            "centroid_x": rng.uniform(0, 100, n),
        }
    ).to_csv(tmp_path / "verdicts.csv", index=False)
    code, out, _ = _main(capsys, "fit-thresholds", "--verdicts", tmp_path / "verdicts.csv",
                         "--grid", 1, 2, 2, "--folds", 3, "--out", tmp_path / "fit")  # fmt: skip
    assert code == 0 and "threshold_volume=" in out
    summary = json.loads((tmp_path / "fit" / "thresholds_summary.json").read_text())
    assert len(summary["folds"]) == 3
    assert summary["scores_all_detections"]["recall"] >= 0.8
    code, _, err = _main(capsys, "fit-thresholds", "--out", tmp_path / "x")
    assert code == 2 and "--verdicts" in err


def test_subcommands_run_as_a_module(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path / "verdicts.csv")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "agreement", str(verdicts), "--quorum", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Fleiss' kappa" in result.stdout
