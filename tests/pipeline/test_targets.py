"""Training targets: border separation and the clamped, anisotropic signed distance."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidInputError
from pipeline.targets import instance_targets, separate_touching


def test_touching_objects_get_a_one_voxel_border() -> None:
    labels = np.zeros((6, 10, 14), np.uint32)
    labels[1:5, 2:8, 2:7] = 1
    labels[1:5, 2:8, 7:12] = 2  # touches object 1 along the plane x = 6.5
    foreground, _ = instance_targets(labels, (100.0, 100.0, 100.0))
    objects = labels != 0
    removed = objects & (foreground == 0)
    # exactly one plane of object voxels turned background, where the objects meet
    assert np.array_equal(np.unique(np.nonzero(removed)[2]), [6])
    assert removed.sum() == 4 * 6
    assert np.array_equal(foreground[1:5, 2:8, 7:12], np.ones((4, 6, 5)))
    assert np.array_equal(foreground[1:5, 2:8, 2:6], np.ones((4, 6, 4)))
    assert not foreground[~objects].any()
    # an isolated object keeps every voxel
    alone = np.zeros((5, 5), np.uint32)
    alone[1:4, 1:4] = 3
    assert np.array_equal(separate_touching(alone), alone != 0)


def test_signed_distance_sign_clamp_and_units() -> None:
    labels = np.zeros((1, 41, 41), np.uint32)
    labels[:, 10:31, 10:31] = 5
    _, distance = instance_targets(labels, (50.0, 50.0, 50.0), clamp_nm=400.0)
    assert distance.dtype == np.float32
    assert (distance[labels != 0] > 0).all()
    assert (distance[labels == 0] < 0).all()
    assert distance[0, 20, 10] == pytest.approx(50.0)  # edge voxel: one voxel to background
    assert distance[0, 20, 9] == pytest.approx(-50.0)
    assert distance[0, 20, 13] == pytest.approx(200.0)
    assert distance.max() == pytest.approx(400.0) and distance.min() == pytest.approx(-400.0)
    assert distance[0, 20, 20] == 400.0 and distance[0, 0, 0] == -400.0


def test_anisotropic_voxel_size_is_honoured() -> None:
    labels = np.zeros((21, 21, 21), np.uint32)
    labels[5:16, 1:20, 1:20] = 1
    _, distance = instance_targets(labels, (300.0, 100.0, 100.0), clamp_nm=1e6)
    # the same number of voxels along z and along x: distances differ by the voxel ratio
    assert distance[2, 10, 10] == pytest.approx(-900.0)  # 3 voxels above the object
    assert distance[10, 10, 0] == pytest.approx(-100.0)  # 1 voxel beside it
    assert distance[6, 10, 10] == pytest.approx(600.0)  # 2 voxels to the background along z
    assert distance[10, 10, 2] == pytest.approx(200.0)  # 2 voxels to the background along x


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError):
        instance_targets(np.zeros((4, 4, 4), np.uint32), (1.0, 1.0))
    with pytest.raises(InvalidInputError):
        instance_targets(np.zeros(4, np.uint32), (1.0,))
