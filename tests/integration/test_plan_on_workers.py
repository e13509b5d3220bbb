"""A pipeline plan run by real Celery workers gives the command line's output; failures and
cancellation show in the plan's state and stop it."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import edt
import numpy as np
import pytest
import zarr
from celery_harness import LiveWorker, wait_for
from django.conf import settings as django_settings

from pipeline.plan import cancel_plan, plan_state
from pipeline.segment import SegmentPlan, plan_segment, segment_volume
from pipeline.synthetic import make_nuclei_volume
from webapp.celery import ping
from webapp.core.jobs.plans import CeleryPlanExecutor
from webapp.core.tasks import plan_step_done_task

pytestmark = pytest.mark.integration

VOXEL = (200.0, 200.0, 200.0)
BLOCK = (16, 32, 32)


def _distance(folder: Path) -> Path:
    _, labels = make_nuclei_volume((32, 64, 64), 14, seed=4, voxel_size_nm=200.0)
    signed = edt.edt(labels, anisotropy=VOXEL, black_border=False) - edt.edt(
        labels == 0, anisotropy=VOXEL
    )
    path = folder / "distance.zarr"
    stored = zarr.create_array(str(path), shape=labels.shape, chunks=BLOCK, dtype=np.float32)
    stored[:] = signed.astype(np.float32)
    return path


def _plan(folder: Path, name: str) -> SegmentPlan:
    return plan_segment(
        folder / "distance.zarr", folder / f"{name}.zarr", folder / f"{name}-work",
        block_shape=BLOCK, voxel_size=VOXEL, seed_threshold=400.0,
    )  # fmt: skip


@pytest.fixture
def folder() -> Path:
    """Under DATA_ROOT, which the worker process shares."""
    path = Path(django_settings.DATA_ROOT) / "tmp" / "plans"
    path.mkdir(parents=True, exist_ok=True)
    _distance(path)
    return path


def test_a_segment_plan_on_a_worker_equals_the_command_line(
    celery_worker: LiveWorker, folder: Path
) -> None:
    reference = segment_volume(
        folder / "distance.zarr", folder / "reference.zarr", block_shape=BLOCK,
        voxel_size=VOXEL, seed_threshold=400.0,
    )  # fmt: skip
    plan = _plan(folder, "workers")
    then = ping.s("plan done")
    CeleryPlanExecutor(on_done=then).execute(plan)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 120, "the plan"
    )
    assert state.state == "finished", state
    assert state.steps == {step: (8, 8) for step in plan.steps}
    assert plan.summary()["objects"] == reference.n_objects > 5
    assert reference.n_merged > 0  # objects crossed block faces: the merge step mattered
    out = np.asarray(zarr.open_array(str(folder / "workers.zarr" / "s0"), mode="r")[:])
    expected = np.asarray(zarr.open_array(str(folder / "reference.zarr" / "s0"), mode="r")[:])
    np.testing.assert_array_equal(out, expected)
    log = celery_worker.process.log_path.read_text()
    assert "core.plan_item" in log and "core.plan_step_done" in log
    # on_done ran after the last step (the worker logs the ping's result)
    wait_for(lambda: "plan done" in celery_worker.process.log_path.read_text(), 30, "on_done")

    # A redelivered last callback queues nothing; one that finds an item unfinished (a chord
    # counter thrown off by a redelivery) queues it again, once per round; on_done runs once.
    work, relabel = str(plan.work_dir), lambda: plan_state(plan.work_dir).steps["relabel"]
    dispatched = lambda: sorted(p.name for p in (plan.work_dir / "dispatch").iterdir())  # noqa: E731
    plan_step_done_task.delay(work, 2, dict(then), 0).get(timeout=60)
    assert dispatched() == ["merge-0", "on-done", "relabel-0", "watershed-0"]
    (plan.work_dir / "relabel" / "3").unlink()
    plan_step_done_task.delay(work, 2, dict(then), 0).get(timeout=60)
    wait_for(lambda: relabel() == (8, 8), 60, "the item queued again")
    (plan.work_dir / "relabel" / "3").unlink()
    plan_step_done_task.delay(work, 2, dict(then), 0).get(timeout=60)  # round 1 was queued
    assert ping.delay().get(timeout=60) and relabel() == (7, 8)
    plan_step_done_task.delay(work, 2, dict(then), 1).get(timeout=60)
    wait_for(lambda: relabel() == (8, 8), 60, "round 2")
    assert dispatched() == [
        "merge-0", "on-done", "relabel-0", "relabel-1", "relabel-2", "watershed-0",
    ]  # fmt: skip
    assert celery_worker.process.log_path.read_text().count("'plan done'") == 1
    np.testing.assert_array_equal(
        np.asarray(zarr.open_array(str(folder / "workers.zarr" / "s0"), mode="r")[:]), expected
    )


def test_a_failing_item_fails_the_plan_with_its_message(
    celery_worker: LiveWorker, folder: Path
) -> None:
    plan = _plan(folder, "broken")
    shutil.rmtree(folder / "distance.zarr")  # the input vanished after planning
    CeleryPlanExecutor().execute(plan)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 120, "the failure"
    )
    assert state.state == "failed"
    assert state.error.startswith("watershed ") and "distance.zarr" in state.error
    assert state.steps["relabel"] == (0, 8)
    _distance(folder)  # the input is back: executing the plan again starts it afresh
    CeleryPlanExecutor().execute(plan)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 120, "the rerun"
    )
    assert state.state == "finished" and state.error == ""


def test_a_cancelled_plan_runs_nothing_more(celery_worker: LiveWorker, folder: Path) -> None:
    plan = _plan(folder, "cancelled")
    CeleryPlanExecutor().execute(plan)
    cancel_plan(plan.work_dir)  # long before the first step's eight items and callback are done
    assert ping.delay().get(timeout=60)  # queued after the step's items: they have been taken
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).steps["watershed"][0] < 8 and s, 10, "skips"
    )
    assert state.state == "cancelled" and state.steps["relabel"] == (0, 8)
    # Executing it again runs it to the end: what was done stays done.
    CeleryPlanExecutor().execute(plan)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 120, "the rerun"
    )
    assert state.state == "finished" and state.steps["relabel"] == (8, 8)


def test_a_predict_plan_on_a_worker_loads_the_model_there(
    celery_worker: LiveWorker, folder: Path
) -> None:
    import torch

    from pipeline.model_io import save_model
    from pipeline.predict import plan_predict, predict_volume
    from pipeline.unet import UNet, UNetConfig

    torch.manual_seed(3)
    network = UNet(UNetConfig(width=2))
    for head in network.heads.values():  # untrained heads are zero: make the outputs vary
        torch.nn.init.normal_(head.weight, std=0.5)
    model = folder / "model.pt"
    save_model(model, network, mean=100.0, std=20.0, voxel_size=VOXEL, metadata={"clamp_nm": 4e3})
    image = np.random.default_rng(0).normal(100, 20, (24, 20, 28)).astype(np.float32)
    np.save(folder / "image.npy", image)
    reference = predict_volume(model, image, folder / "reference-p", block_shape=(12, 8, 12))
    plan = plan_predict(
        model, folder / "image.npy", folder / "predicted", block_shape=(12, 8, 12),
        batch_size=3, num_threads=1, device="cpu", for_workers=True,
    )  # fmt: skip
    CeleryPlanExecutor().execute(plan)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 180, "the prediction"
    )
    assert state.state == "finished" and state.steps == {"predict": (6, 6)}, state
    for name in ("probability", "distance"):
        got = np.asarray(zarr.open_array(str(plan.work_dir / f"{name}.ome.zarr/s0"))[:])
        want = np.asarray(
            zarr.open_array(str(reference.probability_path.parent / f"{name}.ome.zarr/s0"))[:]
        )
        np.testing.assert_allclose(got, want, atol=0.05 if name == "distance" else 1e-5)
        assert want.std() > 1e-3


def test_a_pool_child_killed_mid_item_is_recovered_with_identical_output(
    celery_worker: LiveWorker, folder: Path
) -> None:
    """SIGKILL the worker's pool process while it predicts a batch: the task comes back, the
    batch runs again, and the maps equal those of a plan no one disturbed."""
    import torch

    from pipeline.model_io import save_model
    from pipeline.plan import LocalExecutor
    from pipeline.predict import plan_predict
    from pipeline.unet import UNet, UNetConfig

    torch.manual_seed(5)
    network = UNet(UNetConfig(width=8))
    for head in network.heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    model = folder / "model8.pt"
    save_model(model, network, mean=100.0, std=20.0, voxel_size=VOXEL, metadata={"clamp_nm": 4e3})
    image = np.random.default_rng(1).normal(100, 20, (48, 96, 96)).astype(np.float32)
    np.save(folder / "image96.npy", image)

    def planned(name: str) -> Any:
        return plan_predict(
            model, folder / "image96.npy", folder / name, block_shape=(24, 48, 48),
            batch_size=4, num_threads=1, device="cpu", for_workers=True,
        )  # fmt: skip

    undisturbed = planned("undisturbed")
    threads = torch.get_num_threads()
    try:
        LocalExecutor().execute(undisturbed)  # one thread per batch, as the worker runs it
    finally:
        torch.set_num_threads(threads)
    plan = planned("killed")
    CeleryPlanExecutor().execute(plan)
    starts = plan.work_dir / "starts"
    wait_for(lambda: starts.is_dir() and any(starts.iterdir()), 60, "the first batch to start")
    assert plan.pending("predict") == [0, 1]  # it is still running
    [child] = celery_worker.process.pool_children()
    os.kill(child, signal.SIGKILL)
    state = wait_for(
        lambda: (s := plan_state(plan.work_dir)).state != "running" and s, 180, "the recovery"
    )
    assert state.state == "finished", state
    assert len(list(starts.glob("predict-0.*"))) == 2  # the killed batch ran again, once
    for name in ("probability", "distance"):
        got = zarr.open_array(str(plan.work_dir / f"{name}.ome.zarr/s0"), mode="r")[:]
        want = zarr.open_array(str(undisturbed.work_dir / f"{name}.ome.zarr/s0"), mode="r")[:]
        np.testing.assert_array_equal(got, want)
