"""A model trained on one session holds on another three times brighter (issue 11).

A small 2D U-Net is trained for 100 steps on a section of a synthetic nuclei volume (2D keeps it
to seconds; the normalisation code is the same for 3D, which test_normalise checks on
prediction). It is applied to a section of another volume, as recorded ("same session") and with
its intensities scaled 3x and offset by 200 ("another session", as the two embryo volumes of
issue 11 differed). With per-volume percentile normalisation, the other session gives the same
probabilities and the same objects; normalised by the training image's mean and std (the former
behaviour, a model trained with ``normalisation: {method: meanstd}``) it falls apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.evaluation import detection_scores, dice_pixel, match_objects
from pipeline.model_io import LoadedModel, load_model
from pipeline.normalise import Normalisation
from pipeline.predict import predict_volume
from pipeline.synthetic import make_nuclei_volume
from pipeline.training import TrainConfig, TrainingBox, train
from pipeline.unet import UNetConfig
from pipeline.watershed import seeded_watershed

VOXEL = 400.0
SEED_NM = 400.0


@pytest.fixture(scope="module")
def sections() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training image and labels, test image and labels: mid sections of two volumes."""
    train_image, train_labels = make_nuclei_volume((12, 96, 96), 24, seed=1, voxel_size_nm=VOXEL)
    test_image, test_labels = make_nuclei_volume((12, 96, 96), 24, seed=2, voxel_size_nm=VOXEL)
    return train_image[6], train_labels[6], test_image[6], test_labels[6]


def _train(sections: tuple[np.ndarray, ...], method: str, out: Path) -> LoadedModel:
    image, labels = sections[0], sections[1]
    unet = UNetConfig(dims=2, width=8, depth=2)
    config = TrainConfig(
        unet=unet,
        patch_shape=unet.valid_input_shape((32, 32)),
        voxel_size=(VOXEL, VOXEL),
        batch_size=4,
        lr=3e-3,
        warmup_steps=10,
        lr_schedule="cosine",
        grad_clip_norm=1.0,
        max_epochs=1,
        iterations_per_epoch=100,
        val_fraction=0.0,
        clamp_nm=1500.0,
        normalisation=Normalisation(method=method),  # type: ignore[arg-type]
        num_threads=1,
        device="cpu",
    )
    result = train([TrainingBox(image, labels, (0, 0, *image.shape), "a")], config, out)
    return load_model(result.best_checkpoint, "cpu")


def _segment(model: LoadedModel, image: np.ndarray, out: Path) -> tuple[np.ndarray, np.ndarray]:
    result = predict_volume(model, image, out, num_threads=1)
    probability = np.asarray(zarr.open_array(str(result.probability_path / "s0"))[:])
    distance = np.asarray(zarr.open_array(str(result.distance_path / "s0"))[:])
    labels = seeded_watershed(
        distance, seed_threshold=SEED_NM, probability=probability, min_seed_voxels=3
    )
    return probability, labels


def _f1(labels: np.ndarray, truth: np.ndarray) -> float:
    matched = match_objects(labels, truth).matched_a.size
    n_pred, n_true = len(np.unique(labels)) - 1, len(np.unique(truth)) - 1
    return detection_scores(matched, n_pred - matched, n_true - matched)[2]


def test_percentile_normalisation_holds_on_a_brighter_session(
    sections: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    model = _train(sections, "percentile", tmp_path / "model")
    assert model.normalisation.method == "percentile"
    test_image, truth = sections[2], sections[3]
    brighter = test_image.astype(np.float32) * 3.0 + 200.0
    p_same, seg_same = _segment(model, test_image, tmp_path / "same")
    p_other, seg_other = _segment(model, brighter, tmp_path / "other")
    assert dice_pixel(p_same > 0.5, truth) > 0.8 and _f1(seg_same, truth) > 0.5  # it learnt
    np.testing.assert_allclose(p_other, p_same, atol=1e-4)
    assert np.array_equal(seg_other, seg_same)
    # The same weights with one fixed map, the training image's (what mean/std normalisation
    # does), on the brighter session: most of the foreground and the objects are lost.
    fixed = model.normalisation.scaling(sections[0])
    result = predict_volume(model, brighter, tmp_path / "fixed", scaling=fixed, num_threads=1)
    p_fixed = np.asarray(zarr.open_array(str(result.probability_path / "s0"))[:])
    assert dice_pixel(p_fixed > 0.5, truth) < dice_pixel(p_same > 0.5, truth) - 0.2


def test_mean_std_normalisation_fails_on_a_brighter_session(
    sections: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    model = _train(sections, "meanstd", tmp_path / "model")
    image = sections[0]
    assert model.normalisation.values == pytest.approx((image.mean(), image.std()), rel=1e-5)
    test_image, truth = sections[2], sections[3]
    brighter = test_image.astype(np.float32) * 3.0 + 200.0
    p_same, seg_same = _segment(model, test_image, tmp_path / "same")
    p_other, seg_other = _segment(model, brighter, tmp_path / "other")
    assert dice_pixel(p_same > 0.5, truth) > 0.8  # as good as the percentile model here
    assert dice_pixel(p_other > 0.5, truth) < dice_pixel(p_same > 0.5, truth) - 0.2
    assert _f1(seg_other, truth) < _f1(seg_same, truth) - 0.2
