"""The U-Net: valid-convolution shapes, margins, initialisation, heads, 2D variant."""

from __future__ import annotations

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
