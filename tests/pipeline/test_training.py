"""Training: loss goes down, class weights, early stopping, checkpoints, resume, determinism."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import InvalidInputError
from pipeline.model_io import load_model
from pipeline.patches import extract_sample
from pipeline.progress import TRAINING_STEPS
from pipeline.synthetic import make_nuclei_volume
from pipeline.training import (
    WEIGHT_KEY,
    TrainConfig,
    Trainer,
    TrainingBox,
    class_weights,
    contact_weights,
    masked_loss,
    prepare_box,
    split_boxes,
    train,
)
from pipeline.unet import UNetConfig

VOXEL = (200.0, 200.0, 200.0)


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    return make_nuclei_volume((24, 56, 56), 10, seed=1, voxel_size_nm=VOXEL[0])


def _boxes(volume: tuple[np.ndarray, np.ndarray]) -> list[TrainingBox]:
    image, labels = volume
    return [
        TrainingBox(image, labels, (0, 0, 0, 24, 28, 56), "north"),
        TrainingBox(image, labels, (0, 28, 0, 24, 56, 28), "south-west"),
        TrainingBox(image, labels, (0, 28, 28, 24, 56, 56), "south-east"),
    ]


def _config(**changes: object) -> TrainConfig:
    base = TrainConfig(
        unet=UNetConfig(width=2),
        patch_shape=(52, 52, 52),  # output 12^3: windows fit inside the 24-voxel-deep boxes
        voxel_size=VOXEL,
        batch_size=1,
        lr=1e-3,
        max_epochs=2,
        iterations_per_epoch=2,
        patience=5,
        max_val_patches=2,
        health_epochs=0,  # a few steps of a width-2 network are not meant to be healthy
        val_interval=0,  # loss only: object validation is tested in test_training_health.py
        num_threads=2,
        device="cpu",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_class_weights_from_class_ratio() -> None:
    fg = np.zeros(100, np.float32)
    fg[:25] = 1
    weights = class_weights([fg[:50], fg[50:]])
    assert weights.foreground == pytest.approx(2.0)  # 100 / (2 * 25)
    assert weights.background == pytest.approx(2.0 / 3.0)  # 100 / (2 * 75)
    with pytest.raises(InvalidInputError, match="empty"):
        class_weights([np.zeros(10, np.float32)])


def test_split_by_box_and_single_box_split(volume: tuple[np.ndarray, np.ndarray]) -> None:
    boxes = _boxes(volume)
    train_boxes, val_boxes = split_boxes(boxes, 0.2, seed=0)
    assert len(train_boxes) == 2 and len(val_boxes) == 1
    assert {b.name for b in train_boxes + val_boxes} == {b.name for b in boxes}
    single_train, single_val = split_boxes(boxes[:1], 0.2, seed=0)
    assert single_train[0].box == (0, 0, 0, 24, 28, 45) and single_val[0].box == (
        0,
        0,
        45,
        24,
        28,
        56,
    )


def test_loss_drops_and_best_model_reloads_identically(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    trainer = Trainer(_boxes(volume), _config(lr=3e-3, augment=False), tmp_path)
    box = trainer.train_boxes[0]
    scaling = trainer.scaling(box)
    samples = [
        extract_sample(
            box, start, trainer.output_shape, trainer.margin, scaling.offset, scaling.scale
        )
        for start in ((0, 0, 0), (12, 16, 44))
    ]
    image, targets, mask = trainer.batches.collate(samples)
    losses = []
    for _ in range(40):  # heads start at zero: the first steps mostly move the heads
        trainer.optimizer.zero_grad()
        loss = masked_loss(trainer.model(image), targets, mask, trainer.kinds, trainer.weights)
        loss.backward()  # type: ignore[no-untyped-call]
        trainer.optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert losses[-1] < min(losses[:20])
    trainer.save_best(tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt", "cpu")
    low, high = np.percentile(volume[0], [1.0, 99.8])  # the image is small: no sampling
    assert loaded.normalisation.method == "percentile"
    assert loaded.normalisation.values == pytest.approx((low, high), rel=1e-5)
    assert (loaded.mean, loaded.std) == pytest.approx((low, high - low), rel=1e-5)
    assert loaded.metadata["clamp_nm"] == trainer.config.clamp_nm and loaded.voxel_size == VOXEL
    assert 1000.0 < trainer.config.clamp_nm < 8000.0  # auto: 1.5 x the median nucleus radius
    x = torch.randn(1, 1, 52, 52, 52)
    trainer.model.eval()
    with torch.inference_mode():
        expected, got = trainer.model(x), loaded.model(x)
    for name in ("probability", "distance"):
        assert torch.equal(expected[name], got[name])


def test_early_stopping_keeps_best_and_writes_history(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    # An update far below float32 resolution never changes the weights: no improvement after
    # the first epoch, so training stops after 1 + patience epochs.
    config = _config(lr=1e-20, max_epochs=20, patience=2)
    events: list[tuple[str, int]] = []

    def progress(stage: str, done: int, total: int) -> None:
        assert stage == TRAINING_STEPS and total == 20 * config.iterations_per_epoch
        events.append(("step", done))

    def metrics(row: dict[str, float]) -> None:
        events.append(("epoch", int(row["epoch"])))

    result = train(_boxes(volume), config, tmp_path, progress=progress, metrics=metrics)
    assert result.epochs == 3
    # An epoch's last step counts once the epoch is validated and saved (the wait is part of
    # the steps' pace), and stopping early counts the rest as done.
    for epoch in (1, 2, 3):
        last = ("step", epoch * config.iterations_per_epoch)
        assert events.index(last) == events.index(("epoch", epoch)) + 1, events
    assert events[-1] == ("step", 20 * config.iterations_per_epoch)
    rows = list(csv.DictReader(result.history_csv.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert len({r["val_loss"] for r in rows}) == 1
    assert result.best_val_loss == pytest.approx(float(rows[0]["val_loss"]))
    assert load_model(result.best_checkpoint, "cpu").metadata["epoch"] == 1
    assert result.history_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInputError, match="resume"):
        train(_boxes(volume), _config(), tmp_path)


def test_resume_continues_and_matches_an_uninterrupted_run(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    boxes = _boxes(volume)
    # A warm-up longer than the first run: the resumed run must continue its ramp.
    guards = {"warmup_steps": 5, "grad_clip_norm": 1.0, "lr_schedule": "cosine"}
    full = train(boxes, _config(max_epochs=3, **guards), tmp_path / "full")
    again = train(boxes, _config(max_epochs=3, **guards), tmp_path / "again")
    first = train(boxes, _config(max_epochs=2, **guards), tmp_path / "resumed")
    assert first.epochs == 2
    resumed = train(boxes, _config(max_epochs=3, **guards), tmp_path / "resumed", resume=True)
    assert resumed.epochs == 3

    def losses(path: Path) -> list[tuple[str, str]]:
        return [(r["train_loss"], r["val_loss"]) for r in csv.DictReader(path.open())]

    assert losses(full.history_csv) == losses(again.history_csv)  # seeds fix everything
    assert losses(resumed.history_csv) == losses(full.history_csv)
    assert resumed.best_val_loss == full.best_val_loss


def test_a_moving_average_of_the_weights_is_validated_kept_and_resumed(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    boxes = _boxes(volume)
    config = _config(ema_decay=0.9, max_epochs=3, lr=3e-3)
    full = train(boxes, config, tmp_path / "full")
    # The kept model is the average, not the weights as trained: the last checkpoint holds both.
    last = torch.load(tmp_path / "full" / "last.pt", map_location="cpu", weights_only=True)
    assert last["ema"] is not None and int(last["ema"]["n_averaged"]) == 3 * 2
    trainer = Trainer(boxes, config, tmp_path / "probe")
    trainer.load_checkpoint(tmp_path / "full" / "last.pt")
    trained = dict(trainer.model.named_parameters())
    averaged = dict(trainer.eval_model.named_parameters())
    assert set(trained) == set(averaged)
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained)
    # The warm-up: the first step's weights are copied; the second blends in with decay
    # min(0.9, (1 + 1) / (10 + 1)) = 2/11, so the average is 2/11 of the first and 9/11 of
    # the second.
    one = Trainer(boxes, config, tmp_path / "one")
    one._train_step(0)
    first = {k: v.detach().clone() for k, v in one.model.named_parameters()}
    assert all(torch.equal(first[k], v) for k, v in one.eval_model.named_parameters())
    one._train_step(1)
    second = dict(one.model.named_parameters())
    for k, v in one.eval_model.named_parameters():
        expected = first[k] * (2 / 11) + second[k].detach() * (9 / 11)
        assert torch.allclose(v, expected, atol=1e-6), k
    assert any(not torch.equal(first[k], second[k]) for k in first)
    # The kept model file (best.pt) holds the averaged weights, not the trained ones.
    one.save_best(tmp_path / "kept.pt")
    kept = load_model(tmp_path / "kept.pt", "cpu").model.state_dict()
    averaged_state = one.eval_model.state_dict()
    trained_state = one.model.state_dict()
    assert all(torch.equal(kept[k], averaged_state[k]) for k in kept)
    assert any(not torch.equal(kept[k], trained_state[k]) for k in kept)
    # Resume continues the average exactly.
    train(boxes, _config(ema_decay=0.9, max_epochs=2, lr=3e-3), tmp_path / "resumed")
    resumed = train(boxes, config, tmp_path / "resumed", resume=True)

    def losses(path: Path) -> list[tuple[str, str]]:
        return [(r["train_loss"], r["val_loss"]) for r in csv.DictReader(path.open())]

    assert losses(resumed.history_csv) == losses(full.history_csv)
    # A checkpoint resumed with another setting is refused, not silently mixed.
    with pytest.raises(InvalidInputError, match="moving average"):
        train(boxes, _config(max_epochs=4, lr=3e-3), tmp_path / "full", resume=True)
    # Off by default, and a decay outside [0, 1) is refused.
    assert TrainConfig().ema_decay == 0.0 and Trainer(boxes, _config(), tmp_path / "p").ema is None
    with pytest.raises(InvalidInputError, match="ema_decay"):
        train(boxes, _config(ema_decay=1.0), tmp_path / "bad")


def test_bad_config_is_rejected(volume: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not valid"):
        train(_boxes(volume), _config(patch_shape=(51, 52, 52)), tmp_path)
    image, labels = volume
    empty = [TrainingBox(image, np.zeros_like(labels), (0, 0, 0, 24, 28, 56), "empty")]
    with pytest.raises(InvalidInputError, match="empty"):
        train(empty * 2, _config(), tmp_path)
    with pytest.raises(InvalidInputError, match="voxel_size"):
        train(_boxes(volume), _config(voxel_size=None), tmp_path)


def test_contact_weights_only_near_touching_objects_and_off_by_default(
    volume: tuple[np.ndarray, np.ndarray],
) -> None:
    labels = np.zeros((1, 8, 40), np.uint32)
    labels[0, 2:6, 2:12] = 1
    labels[0, 2:6, 12:22] = 2  # touches 1 along x = 11 | 12
    labels[0, 2:6, 28:36] = 3  # alone
    weights = contact_weights(labels, (100.0, 100.0, 100.0), 4.0, 250.0)
    # The separating border is x = 11 (the lower side): 250 nm reaches two voxels either way.
    np.testing.assert_array_equal(weights[0, 4, 7:16], [1, 1, 5, 5, 5, 5, 5, 1, 1])
    assert (weights[0, :, 26:] == 1.0).all()
    assert (contact_weights(np.ones((4, 4, 4), np.uint32), VOXEL, 4.0, 250.0) == 1).all()
    box = _boxes(volume)[0]
    assert WEIGHT_KEY not in prepare_box(box, _config()).targets
    weighted = prepare_box(box, _config(contact_weight=4.0)).targets[WEIGHT_KEY]
    assert weighted.max() == 5.0 and weighted.min() == 1.0
    target = torch.zeros(1, 1, 2)
    output = {"distance": torch.ones(1, 1, 2)}
    mask = torch.ones(1, 1, 2)
    plain = masked_loss(output, {"distance": target}, mask, {"distance": "linear"}, {})
    extra = torch.tensor([[[1.0, 3.0]]])
    heavier = masked_loss(
        output, {"distance": target, WEIGHT_KEY: extra}, mask, {"distance": "linear"}, {}
    )
    assert float(plain) == pytest.approx(1.0) and float(heavier) == pytest.approx(2.0)


def test_warmup_and_cosine_schedule_set_the_learning_rate_and_clipping_bounds_the_gradient(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    trainer = Trainer(_boxes(volume), _config(warmup_steps=4, grad_clip_norm=0.01), tmp_path)
    norms: list[float] = []
    lrs: list[float] = []
    step = trainer.optimizer.step

    def recording_step(*args: object, **kwargs: object) -> object:
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step  # type: ignore[method-assign]
    for i in range(6):
        trainer._train_step(i)
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert max(norms) <= 0.01 * 1.001

    unguarded = Trainer(_boxes(volume), _config(), tmp_path / "plain")
    unguarded._train_step(0)
    assert unguarded.optimizer.param_groups[0]["lr"] == 1e-3
    grads = [p.grad.norm() for p in unguarded.model.parameters() if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack(grads))) > 0.01  # so clipping did act

    cosine = Trainer(
        _boxes(volume), _config(warmup_steps=2, lr_schedule="cosine"), tmp_path / "cosine"
    )
    ramp = []
    for i in range(5):  # 2 epochs x 2 iterations, then past the end
        cosine._set_lr(i)
        ramp.append(cosine.optimizer.param_groups[0]["lr"])
    assert ramp == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4, 0.0], abs=1e-12)

    with pytest.raises(InvalidInputError, match="lr_schedule"):
        train(_boxes(volume), _config(lr_schedule="linear"), tmp_path / "bad3")
    with pytest.raises(InvalidInputError, match="warmup_steps"):
        train(_boxes(volume), _config(warmup_steps=-1), tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="grad_clip_norm"):
        train(_boxes(volume), _config(grad_clip_norm=0.0), tmp_path / "bad2")


def test_border_weights_in_the_training_targets_add_to_contact_weights(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    box = _boxes(volume)[0]
    border = prepare_box(box, _config(border_weight=10.0, border_nm=400.0)).targets[WEIGHT_KEY]
    foreground = prepare_box(box, _config()).targets["probability"]
    # Inside the (separated) objects the border map is 1; only background gaps weigh more.
    assert (border[foreground > 0.5] == 1.0).all()
    assert border.max() > 2.0
    both = prepare_box(
        box, _config(border_weight=10.0, border_nm=400.0, contact_weight=4.0)
    ).targets[WEIGHT_KEY]
    contact = prepare_box(box, _config(contact_weight=4.0)).targets[WEIGHT_KEY]
    np.testing.assert_allclose(both, border + contact - 1.0, rtol=1e-6)
    with pytest.raises(InvalidInputError, match="border_weight"):
        train(_boxes(volume), _config(border_weight=-1.0), tmp_path)


def test_a_target_window_wholly_outside_its_box_is_zero() -> None:
    from pipeline.patches import _crop_padded

    array = np.ones((4, 4, 4), np.float32)
    assert _crop_padded(array, (0, 0, 6), (2, 2, 2)).sum() == 0  # beyond the end along x
    assert _crop_padded(array, (-5, 0, 0), (2, 2, 2)).sum() == 0  # before the start along z
    assert _crop_padded(array, (-1, 0, 0), (2, 2, 2)).sum() == 4  # half inside


def test_a_fine_tune_starts_from_its_parents_weights_and_learns_faster(
    volume: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    boxes = _boxes(volume)
    parent = train(
        boxes, _config(lr=3e-3, max_epochs=20, patience=20, augment=False), tmp_path / "parent"
    )  # 40 steps: enough to learn something (test_loss_drops_...)
    parent_model = load_model(parent.best_checkpoint, "cpu").model
    child = Trainer(boxes, _config(init_model=parent.best_checkpoint), tmp_path / "child")
    for name, weights in parent_model.state_dict().items():
        assert torch.equal(child.model.state_dict()[name], weights), name
    scratch = Trainer(boxes, _config(), tmp_path / "scratch")
    assert not all(
        torch.equal(scratch.model.state_dict()[name], weights)
        for name, weights in parent_model.state_dict().items()
    )
    # One epoch from the parent is already past where one epoch from scratch is.
    tuned = train(boxes, _config(init_model=parent.best_checkpoint, max_epochs=1), tmp_path / "t")
    fresh = train(boxes, _config(max_epochs=1), tmp_path / "f")
    assert tuned.best_val_loss < fresh.best_val_loss
    with pytest.raises(InvalidInputError, match="U-Net differs"):
        Trainer(
            boxes,
            _config(unet=UNetConfig(width=4), init_model=parent.best_checkpoint),
            tmp_path / "other",
        )
