"""Object from a click and propose-all on touching balls whose truth is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.assist import (
    AssistObject,
    Predictions,
    click_window,
    object_from_click,
    predict_box,
    propose_all,
    rle_decode,
    rle_encode,
)
from pipeline.errors import InvalidInputError
from pipeline.model_io import save_model
from pipeline.synthetic import make_nuclei_volume
from pipeline.unet import UNet, UNetConfig

VOXEL = (200.0, 200.0, 200.0)
# Pairs and a chain of touching balls (centres closer than the sum of radii), plus loose ones.
CENTRES = [(20, 20, 20), (20, 20, 37), (20, 40, 28), (44, 30, 24), (44, 30, 46), (20, 55, 60)]
RADIUS = 9.5


def touching_balls(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image (uint16) and labels of balls; a touching voxel goes to the nearer centre."""
    shape = (64, 72, 80)
    grid = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    distances = np.stack([np.linalg.norm(grid - c, axis=1) for c in CENTRES])
    nearest = distances.argmin(axis=0)
    inside = distances.min(axis=0) <= RADIUS
    labels = np.where(inside, nearest + 1, 0).reshape(shape).astype(np.uint32)
    rng = np.random.default_rng(seed)
    image = np.where(labels > 0, 1000.0, 300.0)
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(0, 40, shape)
    return np.clip(image, 0, None).astype(np.uint16), labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))


def test_rle_round_trip_and_contract_form() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((5, 6, 7)) > 0.6
    runs = rle_encode(mask)
    assert np.array_equal(rle_decode(runs, mask.shape), mask)
    assert all(length > 0 for length in runs[1::2])  # runs of 1s only, no empty runs
    assert rle_encode(np.zeros((2, 2, 2), bool)) == []
    assert rle_encode(np.ones((2, 2, 2), bool)) == [0, 8]
    with pytest.raises(InvalidInputError):
        rle_decode([0, 9], (2, 2, 2))


def test_click_inside_each_touching_ball_gives_that_ball() -> None:
    image, labels = touching_balls()
    for index, centre in enumerate(CENTRES, start=1):
        click = (centre[0] + 2, centre[1] - 3, centre[2] + 1)  # off-centre on purpose
        found = object_from_click(image, click, VOXEL)
        assert found is not None
        assert found.source == "watershed"
        assert dice(found.paste(labels.shape), labels == index) >= 0.9, index
        proposal = found.proposal("p1")
        z0, y0, x0, z1, y1, x1 = proposal["bbox"]
        decoded = rle_decode(proposal["rle"], (z1 - z0, y1 - y0, x1 - x0))
        assert decoded.sum() == proposal["voxels"] == found.voxels
        assert 0.0 <= proposal["score"] <= 1.0


def test_click_on_background_finds_nothing_and_outside_is_refused() -> None:
    image, _ = touching_balls()
    assert object_from_click(image, (2, 2, 2), VOXEL) is None
    with pytest.raises(InvalidInputError):
        object_from_click(image, (64, 0, 0), VOXEL)
    with pytest.raises(InvalidInputError):
        object_from_click(image, (1, 1, 1), (200.0, 0.0, 200.0))


def matched(found: list[AssistObject], labels: np.ndarray, at_dice: float) -> int:
    hits = 0
    for index in range(1, int(labels.max()) + 1):
        truth = labels == index
        best = max((dice(o.paste(labels.shape), truth) for o in found), default=0.0)
        hits += best >= at_dice
    return hits


def test_propose_all_finds_the_touching_balls_and_reports_progress() -> None:
    image, labels = touching_balls()
    reports: list[tuple[str, int, int]] = []
    found = propose_all(image, VOXEL, progress=lambda *r: reports.append(r))
    assert matched(found, labels, 0.9) == len(CENTRES)
    assert len(found) == len(CENTRES)
    assert reports[-1] == ("proposing objects", 3, 3)
    assert [done for _, done, _ in reports] == [0, 1, 2, 3]
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)


def test_predictions_are_used_when_given() -> None:
    _, labels = touching_balls()
    # A perfect model: probability 1 inside, the distance to each ball's own surface in nm.
    distance = np.zeros(labels.shape, np.float32)
    for index in range(1, len(CENTRES) + 1):
        own = labels == index
        distance += ndimage.distance_transform_edt(own, sampling=VOXEL).astype(np.float32) * own
    distance[labels == 0] = -200.0
    predictions = Predictions(probability=(labels > 0).astype(np.float32), distance=distance)
    blank = np.zeros(labels.shape, np.uint16)  # the image is not looked at
    found = object_from_click(blank, CENTRES[1], VOXEL, predictions)
    assert found is not None and found.source == "model"
    assert dice(found.paste(labels.shape), labels == 2) >= 0.95
    everything = propose_all(blank, VOXEL, predictions)
    assert matched(everything, labels, 0.95) == len(CENTRES)
    assert {o.source for o in everything} == {"model"}
    with pytest.raises(InvalidInputError):
        propose_all(blank[:10], VOXEL, predictions)


def test_synthetic_nuclei_clicks_and_proposals() -> None:
    """The demo's kind of image: irregular nuclei, a third touching a neighbour."""
    image, labels = make_nuclei_volume((64, 96, 96), n_nuclei=20, seed=2)
    n = int(labels.max())
    good = 0
    for index in range(1, n + 1):
        truth = labels == index
        where = np.argwhere(ndimage.binary_erosion(truth, iterations=2))
        if not len(where):
            where = np.argwhere(truth)
        click = tuple(int(v) for v in where[len(where) // 2])
        found = object_from_click(image, click, VOXEL)
        good += found is not None and dice(found.paste(labels.shape), truth) >= 0.9
    assert good >= 0.8 * n
    assert matched(propose_all(image, VOXEL), labels, 0.9) >= 0.7 * n


def test_predict_box_gives_maps_over_the_box(tmp_path: Path) -> None:
    """A (tiny, untrained) model's maps cover the box voxel for voxel and feed propose_all."""
    torch.manual_seed(3)
    network = UNet(UNetConfig(width=2))
    for head in network.heads.values():  # untrained heads are zero: make the outputs vary
        assert isinstance(head.weight, torch.Tensor)
        torch.nn.init.normal_(head.weight, std=0.5)
    model = tmp_path / "model.pt"
    save_model(model, network, mean=500.0, std=200.0, voxel_size=VOXEL, metadata={})
    image, _ = touching_balls()
    box = image[:24, :20, :28]
    predictions = predict_box(model, box, tmp_path / "work")
    assert predictions.probability.shape == predictions.distance.shape == box.shape
    assert 0.0 <= float(predictions.probability.min()) <= float(predictions.probability.max()) <= 1
    assert float(predictions.distance.std()) > 0
    for found in propose_all(box, VOXEL, predictions, min_diameter_nm=200.0):
        assert found.source == "model"


def test_a_click_reads_only_its_window() -> None:
    """The site reads only click_window() of a box: the object is the same as on the whole."""
    image, labels = make_nuclei_volume((48, 160, 160), n_nuclei=30, seed=4)
    truth = labels == 5
    where = np.argwhere(ndimage.binary_erosion(truth, iterations=2))
    click = tuple(int(v) for v in where[len(where) // 2])
    window = click_window(click, image.shape, VOXEL)
    assert image[window].size < image.size / 2  # the test means something only if it is small
    whole = object_from_click(image, click, VOXEL)
    local = tuple(c - w.start for c, w in zip(click, window, strict=True))
    part = object_from_click(image[window], local, VOXEL)
    assert whole is not None and part is not None
    moved = part.shifted([w.start for w in window])
    assert moved.bbox == whole.bbox and np.array_equal(moved.mask, whole.mask)
    assert dice(moved.paste(labels.shape), truth) >= 0.9


def test_classical_labels_finds_separate_balls_in_2d_and_3d() -> None:
    from pipeline.assist import classical_labels
    from pipeline.synthetic import make_sphere_labels

    truth, _, _ = make_sphere_labels((32, 64, 64), 6, radius_voxels=(5.0, 7.0), gap_voxels=3.0)
    rng = np.random.default_rng(0)
    image = 100.0 + 400.0 * (truth > 0) + rng.normal(0, 20, truth.shape)
    labels = classical_labels(image, (100.0, 100.0, 100.0))
    assert int(labels.max()) == int(truth.max())
    plane = int(np.argmax([len(np.unique(p)) for p in truth]))
    flat = classical_labels(image[plane], (100.0, 100.0))
    assert flat.ndim == 2
    assert int(flat.max()) == len(np.unique(truth[plane])) - 1
