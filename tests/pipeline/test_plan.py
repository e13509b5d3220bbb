"""Plan, then execute: saved plans run item by item in other processes, a worker killed mid-run
is recovered with identical output, every item can run twice, and in-memory plans say why they
cannot be handed out."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from test_segment import VOXEL, assert_same_partition, packed_spheres

from pipeline import cli
from pipeline.blocks import Grid, iter_blocks
from pipeline.empty_results import EXIT_EMPTY
from pipeline.errors import InvalidInputError
from pipeline.model_io import save_model
from pipeline.plan import (
    MAX_ITEM_STARTS,
    PACE_DIR,
    LocalExecutor,
    load_plan,
    pending_counts,
    plan_state,
    restart_plan,
    run_saved_item,
    save_plan,
)
from pipeline.predict import plan_predict, predict_volume
from pipeline.segment import SegmentPlan, blocks_per_item_for, plan_segment, segment_volume
from pipeline.unet import UNet, UNetConfig

REPO = Path(__file__).resolve().parents[2]
BLOCK = (8, 16, 16)


def _distance_file(tmp_path: Path) -> Path:
    _, distance = packed_spheres((16, 48, 48), VOXEL, seed=3)
    path = tmp_path / "distance.zarr"
    stored = zarr.create_array(str(path), shape=distance.shape, chunks=BLOCK, dtype=np.float32)
    stored[:] = distance
    return path


def _labels(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path / "s0"), mode="r")[:])


def _saved_segment_plan(tmp_path: Path, name: str) -> SegmentPlan:
    plan = plan_segment(
        _distance_file(tmp_path) if not (tmp_path / "distance.zarr").exists()
        else tmp_path / "distance.zarr",
        tmp_path / f"{name}.zarr", tmp_path / f"{name}-work",
        block_shape=BLOCK, voxel_size=VOXEL, smooth_nm=100.0,
    )  # fmt: skip
    save_plan(plan)
    return plan


def test_grid_rebuilds_any_block_by_its_index() -> None:
    grid = Grid.of((10, 7, 13), (4, 4, 5), 2)
    assert [grid.block(b.index) for b in iter_blocks((10, 7, 13), (4, 4, 5), 2)] == list(
        grid.blocks()
    )
    assert len(grid) == 3 * 2 * 3 and grid.strides == (6, 3, 1)
    assert Grid.from_dict(grid.to_dict()) == grid
    with pytest.raises(IndexError):
        grid.block(len(grid))


def test_saved_segment_plan_runs_item_by_item_in_spawned_workers(tmp_path: Path) -> None:
    """Only (work directory, step, item) travel to a worker, as with Celery."""
    reference = segment_volume(
        _distance_file(tmp_path), tmp_path / "reference.zarr", block_shape=BLOCK,
        voxel_size=VOXEL, smooth_nm=100.0,
    )  # fmt: skip
    plan = _saved_segment_plan(tmp_path, "planned")
    loaded = load_plan(Path(plan.work))
    assert loaded == plan and isinstance(loaded, SegmentPlan)
    assert pending_counts(loaded) == {s: (0, len(plan.grid)) for s in plan.steps}
    spawn = multiprocessing.get_context("spawn")
    long_ago = float(int(time.time()) - 3600)  # whole seconds: file times keep them exactly
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        for step in loaded.steps:
            items = loaded.pending(step)
            before = time.time()
            assert run_saved_item(plan.work, step, items[0])
            paced = plan_state(plan.work_dir)
            assert before - 1 <= paced.first_started[step] <= paced.first_done[step][0]
            assert paced.first_done[step][1] == 1 and paced.first_done[step][0] <= time.time()
            for mark in (f"{step}.started", f"{step}.done"):  # later items must leave them be
                os.utime(plan.work_dir / PACE_DIR / mark, (long_ago, long_ago))
            rest = items[1:]
            list(pool.map(run_saved_item, [plan.work] * len(rest), [step] * len(rest), rest))
            loaded.finish_step(step)
    assert pending_counts(loaded) == {s: (len(plan.grid),) * 2 for s in plan.steps}
    paced = plan_state(plan.work_dir)
    assert paced.first_started == dict.fromkeys(plan.steps, long_ago)
    assert paced.first_done == dict.fromkeys(plan.steps, (long_ago, 1))
    restart_plan(plan.work_dir)  # a plan run again paces itself again
    assert plan_state(plan.work_dir).first_done == {}
    summary = loaded.summary()
    assert summary == {
        "objects": reference.n_objects, "merged": reference.n_merged,
        "segments": reference.n_segments,
    }  # fmt: skip
    assert reference.n_merged > 0 and reference.n_objects > 5
    np.testing.assert_array_equal(_labels(tmp_path / "planned.zarr"), _labels(
        tmp_path / "reference.zarr"))  # fmt: skip


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from pipeline.plan import load_plan

plan = load_plan(Path(sys.argv[1]))
for step in plan.steps:
    for item in plan.pending(step):
        if step == "relabel" and item == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        plan.run_item(step, item)
    plan.finish_step(step)
"""


def _killed_plan(tmp_path: Path) -> SegmentPlan:
    """A reference segmentation, and a saved plan of the same whose process was SIGKILLed at the
    sixth relabel item."""
    segment_volume(
        _distance_file(tmp_path), tmp_path / "reference.zarr", block_shape=BLOCK,
        voxel_size=VOXEL, smooth_nm=100.0,
    )  # fmt: skip
    plan = _saved_segment_plan(tmp_path, "killed")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, plan.work], cwd=REPO, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    return plan


def test_a_worker_killed_mid_run_is_recovered_with_identical_output(tmp_path: Path) -> None:
    plan = _killed_plan(tmp_path)
    assert pending_counts(plan)["relabel"] == (5, len(plan.grid))
    progress: list[tuple[str, int, int]] = []
    LocalExecutor().execute(load_plan(Path(plan.work)), lambda *a: progress.append(a))
    # The finished steps report themselves done at once; relabel resumes at item 5.
    assert ("watershed", len(plan.grid), len(plan.grid)) in progress
    assert ("relabel", 5, len(plan.grid)) in progress
    assert ("relabel", 4, len(plan.grid)) not in progress
    np.testing.assert_array_equal(_labels(tmp_path / "killed.zarr"), _labels(
        tmp_path / "reference.zarr"))  # fmt: skip


def test_every_item_run_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    """A task delivered twice (or killed after writing, before its marker) changes nothing."""
    plan = _saved_segment_plan(tmp_path, "once")
    LocalExecutor().execute(plan)
    first = _labels(tmp_path / "once.zarr")
    for step in plan.steps:
        for item in range(plan.items(step)):
            plan.run_item(step, item)
        plan.finish_step(step)
    np.testing.assert_array_equal(_labels(tmp_path / "once.zarr"), first)
    assert len(np.unique(first)) > 5


def test_in_memory_inputs_plan_here_but_cannot_be_handed_out(tmp_path: Path) -> None:
    _, distance = packed_spheres((16, 32, 32), VOXEL, seed=1)
    out = np.zeros(distance.shape, np.uint32)
    plan = plan_segment(distance, out, tmp_path / "work", block_shape=BLOCK, voxel_size=VOXEL)
    with pytest.raises(InvalidInputError, match="distance map is an in-memory array"):
        save_plan(plan)
    LocalExecutor().execute(plan)
    assert plan.summary()["objects"] == len(np.unique(out)) - 1 > 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "plan.json").write_text('{"kind": "paint"}')
    with pytest.raises(InvalidInputError, match="not a readable plan"):
        load_plan(tmp_path / "bad")


def test_saved_predict_plan_runs_from_its_file_as_predict_volume_does(tmp_path: Path) -> None:
    torch.manual_seed(3)
    network = UNet(UNetConfig(width=2))
    for head in network.heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    model = tmp_path / "model.pt"
    save_model(
        model, network, mean=100.0, std=20.0, voxel_size=VOXEL, metadata={"clamp_nm": 4000.0}
    )
    image = np.random.default_rng(0).normal(100, 20, (24, 20, 28)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    reference = predict_volume(
        model, image, tmp_path / "reference", block_shape=(12, 8, 12), num_threads=1
    )
    plan = plan_predict(
        model, tmp_path / "image.npy", tmp_path / "planned", block_shape=(12, 8, 12),
        num_threads=1, batch_size=4, device="cpu", for_workers=True,
    )  # fmt: skip
    assert plan.model is None and len(plan.groups) == 5  # 18 blocks in batches of 4
    save_plan(plan)
    spawn = multiprocessing.get_context("spawn")
    items = plan.pending("predict")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        work = str(tmp_path / "planned")
        list(pool.map(run_saved_item, [work] * len(items), ["predict"] * len(items), items))
    assert load_plan(tmp_path / "planned").pending("predict") == []
    for name in ("probability", "distance"):
        planned = _labels(tmp_path / "planned" / f"{name}.ome.zarr")
        expected = _labels(reference.probability_path.parent / f"{name}.ome.zarr")
        # batches of 4 against 1 sum in another order: float32 rounding only
        np.testing.assert_allclose(planned, expected, atol=0.05 if name == "distance" else 1e-5)
        assert expected.std() > 1e-3
    in_memory = plan_predict(model, image, tmp_path / "memory", block_shape=(12, 8, 12))
    with pytest.raises(InvalidInputError, match="image is an in-memory array"):
        save_plan(in_memory)


def test_a_reused_scratch_directory_never_leaks_an_earlier_run(tmp_path: Path) -> None:
    """segment_volume starts afresh in its scratch; plan_segment refuses a used work directory."""
    _, distance = packed_spheres((16, 32, 32), VOXEL, seed=1)
    scratch = tmp_path / "scratch"
    first = segment_volume(distance, tmp_path / "a.zarr", block_shape=BLOCK, voxel_size=VOXEL,
                           scratch_dir=scratch)  # fmt: skip
    assert first.n_objects > 3
    empty = np.full(distance.shape, -1000.0, np.float32)  # no object at all
    second = segment_volume(empty, tmp_path / "b.zarr", block_shape=BLOCK, voxel_size=VOXEL,
                            scratch_dir=scratch)  # fmt: skip
    assert second.n_objects == 0 and not _labels(tmp_path / "b.zarr").any()
    again = segment_volume(distance, tmp_path / "c.zarr", block_shape=BLOCK, voxel_size=VOXEL,
                           scratch_dir=scratch)  # fmt: skip
    assert again == first
    np.testing.assert_array_equal(_labels(tmp_path / "c.zarr"), _labels(tmp_path / "a.zarr"))
    with pytest.raises(InvalidInputError, match="holds an earlier segmentation's files"):
        plan_segment(distance, tmp_path / "d.zarr", scratch, block_shape=BLOCK)


def test_an_output_made_again_at_the_same_path_is_not_read_from_a_stale_cache(
    tmp_path: Path,
) -> None:
    """A worker process keeps arrays open between items: a rerun that deletes and recreates the
    output (other chunks) must write the new array."""
    distance = _distance_file(tmp_path)
    out = tmp_path / "labels.zarr"
    first = segment_volume(distance, out, block_shape=BLOCK, voxel_size=VOXEL)
    expected = _labels(out)
    shutil.rmtree(out)
    second = segment_volume(distance, out, block_shape=(8, 32, 32), voxel_size=VOXEL)
    assert second.n_objects == first.n_objects
    assert_same_partition(_labels(out), expected)  # other blocks number the objects otherwise


def test_an_item_started_too_often_fails_the_plan_instead_of_looping(tmp_path: Path) -> None:
    """A task whose process is killed each time (out of memory) is redelivered forever by the
    broker: after MAX_ITEM_STARTS starts the plan fails with a message that says so."""
    plan = _saved_segment_plan(tmp_path, "oom")
    starts = plan.work_dir / "starts"
    starts.mkdir()
    for k in range(MAX_ITEM_STARTS):  # what three killed deliveries leave
        (starts / f"watershed-2.killed{k}").touch()
    assert run_saved_item(plan.work, "watershed", 2) is False
    state = plan_state(plan.work_dir)
    assert state.state == "failed"
    assert state.error.startswith("watershed 2: started 3 times without finishing")
    assert run_saved_item(plan.work, "watershed", 3) is False  # a failed plan runs nothing more
    assert state.steps["watershed"] == (0, len(plan.grid))
    restart_plan(plan.work_dir)
    assert run_saved_item(plan.work, "watershed", 2) is True
    assert plan_state(plan.work_dir).state == "running"


def test_the_plan_command_resumes_a_killed_run_and_reports_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user does when the site's workers went away mid-plan: resume it on this machine."""
    plan = _killed_plan(tmp_path)
    n = len(plan.grid)
    assert cli.main(["plan", plan.work, "--status"]) == 0
    out = capsys.readouterr().out
    assert "segment plan" in out and ": running" in out
    assert f"watershed: {n}/{n}" in out and f"relabel: 5/{n}" in out
    assert cli.main(["plan", plan.work, "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "finished" in captured.out and "block/s" in captured.err  # a bar that counts blocks
    np.testing.assert_array_equal(_labels(tmp_path / "killed.zarr"), _labels(
        tmp_path / "reference.zarr"))  # fmt: skip
    assert cli.main(["plan", plan.work, "--status"]) == 0
    assert ": finished" in capsys.readouterr().out
    assert cli.main(["plan", str(tmp_path / "nowhere")]) == 2
    assert "not a readable plan" in capsys.readouterr().err


def test_items_of_several_blocks_give_the_same_labels_and_resume_per_block(
    tmp_path: Path,
) -> None:
    segment_volume(
        _distance_file(tmp_path), tmp_path / "reference.zarr", block_shape=BLOCK,
        voxel_size=VOXEL, smooth_nm=100.0,
    )  # fmt: skip
    plan = plan_segment(
        tmp_path / "distance.zarr", tmp_path / "grouped.zarr", tmp_path / "grouped-work",
        block_shape=BLOCK, voxel_size=VOXEL, smooth_nm=100.0, blocks_per_item=4,
    )  # fmt: skip
    assert len(plan.grid) == 18 and plan.items("watershed") == 5  # the last item has 2 blocks
    assert blocks_per_item_for(BLOCK) == 128**3 // (8 * 16 * 16) and blocks_per_item_for(
        (128, 128, 128)) == 1  # fmt: skip
    save_plan(plan)
    assert load_plan(plan.work_dir) == plan
    plan.run_item("watershed", 0)
    first = (plan.work_dir / "counts" / "0").stat().st_mtime_ns
    (plan.work_dir / "counts" / "1").unlink()  # killed after block 0, before block 1's count
    assert plan.pending("watershed") == [0, 1, 2, 3, 4]
    plan.run_item("watershed", 0)
    assert (plan.work_dir / "counts" / "0").stat().st_mtime_ns == first  # not redone
    assert plan.pending("watershed") == [1, 2, 3, 4]
    LocalExecutor().execute(plan)
    np.testing.assert_array_equal(_labels(tmp_path / "grouped.zarr"), _labels(
        tmp_path / "reference.zarr"))  # fmt: skip
    with pytest.raises(InvalidInputError, match="blocks_per_item"):
        plan_segment(tmp_path / "distance.zarr", tmp_path / "x.zarr", tmp_path / "x",
                     block_shape=BLOCK, blocks_per_item=0)  # fmt: skip


def test_the_plan_command_warns_and_exits_3_when_a_segmentation_plan_finds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distance = tmp_path / "distance.zarr"
    stored = zarr.create_array(str(distance), shape=(16, 48, 48), chunks=BLOCK, dtype=np.float32)
    stored[:] = -300.0  # no voxel is inside an object: no seed can form
    for name, extra in (("empty", []), ("allowed", ["--allow-empty"])):
        plan = _saved_segment_plan(tmp_path, name)
        code = cli.main(["plan", plan.work, *extra])
        captured = capsys.readouterr()
        assert "0 objects" in captured.out
        assert "warning: segment: no seed formed" in captured.err
        assert code == (0 if extra else EXIT_EMPTY)
