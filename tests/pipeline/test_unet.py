"""The U-Net: valid-convolution shapes, margins, initialisation, heads, 2D variant."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from pipeline.errors import InvalidInputError
from pipeline.unet import HeadConfig, UNet, UNetConfig


def test_default_config_maps_published_patch_to_published_output() -> None:
    config = UNetConfig()
    assert config.output_shape((116, 116, 112)) == (76, 76, 72)
    assert config.margin == (20, 20, 20)
    assert config.valid_input_shape((76, 76, 72)) == (116, 116, 112)
    assert config.valid_input_shape((70, 1, 76)) == (112, 44, 116)  # outputs 72, 4, 76
    with pytest.raises(InvalidInputError, match="not valid"):
        config.output_shape((115, 116, 112))
    with pytest.raises(InvalidInputError):
        config.output_shape((40, 40, 40))  # too small for two poolings plus the bottom


@pytest.mark.parametrize(
    ("dims", "input_shape"), [(3, (52, 44, 48)), (2, (60, 52))], ids=["3d", "2d"]
)
def test_network_output_matches_config_and_margin(dims: int, input_shape: tuple[int, ...]) -> None:
    config = UNetConfig(dims=dims, width=2)
    expected = config.output_shape(input_shape)
    assert all(i - o == 2 * m for i, o, m in zip(input_shape, expected, config.margin, strict=True))
    outputs = UNet(config)(torch.zeros((1, 1, *input_shape)))
    assert set(outputs) == {"probability", "distance"}
    for tensor in outputs.values():
        assert tuple(tensor.shape) == (1, 1, *expected)


def test_kaiming_uniform_initialisation_and_zero_heads() -> None:
    model = UNet(UNetConfig(width=4))
    heads = list(model.heads.values())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d) and m not in heads]
    assert len(convs) == 2 * 5 + 2  # five blocks of two, two upsamplings
    assert len(heads) == 2 and not any(h.weight.detach().any() for h in heads)
    for conv in convs:
        fan_in = conv.weight[0].numel()
        bound = math.sqrt(6.0 / fan_in)  # gain sqrt(2) for ReLU times sqrt(3 / fan_in)
        weights = conv.weight.detach().abs()
        assert float(weights.max()) <= bound
        if conv.weight.numel() >= 200:
            assert float(weights.max()) > 0.8 * bound
            assert float(weights.mean()) == pytest.approx(bound / 2, rel=0.25)
        assert conv.bias is not None and not conv.bias.detach().any()
    assert not any(isinstance(m, nn.BatchNorm3d) for m in model.modules())


@pytest.mark.parametrize("seed", range(4))
def test_every_seed_starts_from_zero_outputs_and_learns(seed: int) -> None:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(width=2, depth=1))
    x = torch.randn(1, 1, 28, 28, 28)
    outputs = model(x)
    assert all(not out.detach().any() for out in outputs.values())
    # The heads' gradients are not zero, so training moves off the start at once.
    sum(out.square().sum() + out.sum() for out in outputs.values()).backward()
    assert all(head.weight.grad is not None and head.weight.grad.abs().sum() > 0
               for head in model.heads.values())  # fmt: skip


def test_heads_list_drives_outputs() -> None:
    heads = (
        HeadConfig("probability", "logits"),
        HeadConfig("distance", "linear"),
        HeadConfig("glomerulus", "logits"),
    )
    config = UNetConfig(dims=2, width=2, heads=heads)
    outputs = UNet(config)(torch.zeros((2, 1, 52, 52)))
    assert list(outputs) == ["probability", "distance", "glomerulus"]
    assert all(tuple(t.shape) == (2, 1, 12, 12) for t in outputs.values())


def test_config_round_trip_and_errors() -> None:
    config = UNetConfig(dims=2, width=8, depth=3, width_factor=2)
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidInputError, match="unknown"):
        UNetConfig.from_dict({"widht": 8})
    with pytest.raises(InvalidInputError, match="distinct"):
        UNetConfig(heads=(HeadConfig("a", "logits"), HeadConfig("a", "linear")))
    with pytest.raises(InvalidInputError):
        UNetConfig(dims=4)


# Voxel sizes (z, y, x or y, x) whose chosen pooling differs per axis and level.
SHAPE_CASES = [
    (3, 2, (100.0, 100.0, 100.0)),
    (3, 2, (200.0, 100.0, 100.0)),
    (3, 2, (300.0, 100.0, 100.0)),
    (3, 2, (400.0, 100.0, 100.0)),
    (3, 1, (100.0, 250.0, 100.0)),
    (2, 3, (100.0, 100.0)),
    (2, 3, (350.0, 100.0)),
    (2, 2, (100.0, 800.0)),
]


def _axis_outputs(config: UNetConfig, axis: int, limit: int) -> dict[int, int]:
    """Every valid input size below ``limit`` along one axis, with its output size."""
    others = config.valid_input_shape((1,) * config.dims)
    out = {}
    for n in range(1, limit):
        shape = tuple(n if a == axis else others[a] for a in range(config.dims))
        try:
            out[n] = config.output_shape(shape)[axis]
        except InvalidInputError:
            pass
    return out


@pytest.mark.parametrize(("dims", "depth", "voxel"), SHAPE_CASES, ids=str)
def test_shape_arithmetic_is_exact_for_anisotropic_pooling(
    dims: int, depth: int, voxel: tuple[float, ...]
) -> None:
    from pipeline.anisotropy import anisotropic_unet_config

    config = anisotropic_unet_config(UNetConfig(dims=dims, width=1, depth=depth), voxel)
    multiple = config.output_multiple
    for axis in range(dims):
        sizes = _axis_outputs(config, axis, 200)
        assert sizes, f"no valid size below 200 along axis {axis}"
        outputs = sorted(sizes.values())
        # Valid outputs are spaced by output_multiple; with at most two poolings along the axis
        # they are its multiples (what exact block-wise prediction needs) ...
        assert all(b - a == multiple[axis] for a, b in itertools.pairwise(outputs))
        if sum(p[axis] > 1 for p in config.pools) <= 2:
            assert all(o % multiple[axis] == 0 for o in outputs)
        # ... every valid input loses the same margin ...
        assert {n - o for n, o in sizes.items()} == {2 * config.margin[axis]}
        # ... and valid_input_shape / valid_input_at_least return the smallest fitting size.
        for wanted in (1, 5, 17):
            best = min(n for n, o in sizes.items() if o >= wanted)
            shape = config.valid_input_shape(tuple(wanted if a == axis else 1 for a in range(dims)))
            assert shape[axis] == best
        for at_least in (3, 30, 61):
            shape = config.valid_input_at_least(
                tuple(at_least if a == axis else 1 for a in range(dims))
            )
            assert shape[axis] == min(n for n in sizes if n >= at_least)


@pytest.mark.parametrize(("dims", "depth", "voxel"), SHAPE_CASES, ids=str)
def test_forward_pass_matches_shapes_and_shift_equivariance(
    dims: int, depth: int, voxel: tuple[float, ...]
) -> None:
    from pipeline.anisotropy import anisotropic_unet_config

    config = anisotropic_unet_config(UNetConfig(dims=dims, width=1, depth=depth), voxel)
    torch.manual_seed(0)
    model = UNet(config).eval()
    for module in model.modules():  # positive biases: no dead ReLUs in a one-channel network
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            nn.init.constant_(module.bias, 0.1)
    for head in model.heads.values():
        nn.init.normal_(head.weight)
    multiple = config.output_multiple
    # Smallest valid input plus a few multiples, different per axis.
    base = config.valid_input_shape((1,) * dims)
    shape = tuple(n + (a + 1) * m for a, (n, m) in enumerate(zip(base, multiple, strict=True)))
    expected = config.output_shape(shape)
    x = torch.randn((1, 1, *(n + m for n, m in zip(shape, multiple, strict=True))))
    with torch.inference_mode():
        out = model(x[(..., *(slice(0, n) for n in shape))])["distance"]
        shifted = model(x[(..., *(slice(m, m + n) for n, m in zip(shape, multiple, strict=True)))])
    assert tuple(out.shape[2:]) == expected
    assert all(i - o == 2 * m for i, o, m in zip(shape, expected, config.margin, strict=True))
    # Shifting the input by output_multiple shifts the output by as much, exactly.
    overlap = tuple(slice(m, None) for m in multiple)
    back = tuple(slice(0, n - m) for n, m in zip(expected, multiple, strict=True))
    torch.testing.assert_close(shifted["distance"][(..., *back)], out[(..., *overlap)])
    assert out.std() > 0  # not a vacuous comparison


def test_pool_and_kernel_round_trip_and_old_files() -> None:
    config = UNetConfig(pool=((1, 2, 2), (2, 2, 2)), kernel=((1, 3, 3), (3, 3, 3), (3, 3, 3)))
    assert UNetConfig.from_dict(config.to_dict()) == config
    assert not config.is_isotropic and UNetConfig().is_isotropic
    assert config.output_multiple == (2, 4, 4) and UNetConfig().output_multiple == (4, 4, 4)
    # A model file written before pool/kernel existed: the published isotropic network.
    old = UNetConfig.from_dict({"dims": 3, "in_channels": 1, "width": 16, "depth": 2,
                                "width_factor": 3})  # fmt: skip
    assert old.pools == ((2, 2, 2),) * 2 and old.kernels == ((3, 3, 3),) * 3
    assert "pool" not in old.to_dict() and "kernel" not in old.to_dict()
    # Weights saved by an isotropic network load into one built from explicit 2s and 3s.
    explicit = UNetConfig(width=2, pool=((2, 2, 2),) * 2, kernel=((3, 3, 3),) * 3)
    UNet(explicit).load_state_dict(UNet(UNetConfig(width=2)).state_dict())
    weights = dict(UNet(UNetConfig(width=2, depth=1, pool=((1, 2, 2),))).named_parameters())
    assert weights["down.0.0.weight"].shape[2:] == (3, 3, 3)  # kernel not given: 3
    with pytest.raises(InvalidInputError, match="pool"):
        UNetConfig(pool=((2, 2, 2),))  # depth 2 needs two levels
    with pytest.raises(InvalidInputError, match="1 or 2"):
        UNetConfig(depth=1, pool=((3, 2, 2),))
    with pytest.raises(InvalidInputError, match="odd"):
        UNetConfig(depth=1, kernel=((2, 3, 3), (3, 3, 3)))
    with pytest.raises(InvalidInputError, match="integer lists"):
        UNetConfig.from_dict({"depth": 1, "pool": [[1, 2, "2"]]})
    with pytest.raises(InvalidInputError, match="nearest larger valid shape is"):
        config.output_shape((31, 116, 112))
