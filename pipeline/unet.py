"""The published nuclei U-Net (2D or 3D) with valid convolutions and one 1x1 head per task.

Each level is a block of two 3x3(x3) valid convolutions with ReLU; ``depth`` 2x2(x2) max-pool
downsamplings; each upsampling is nearest-neighbour interpolation followed by a 1x1(x1)
convolution, its result concatenated with the centre crop of the encoder features of that level.
No batch normalisation; Kaiming-uniform weights, zero biases, and heads that start at zero
(every output 0: probability 0.5, distance 0), so no seed begins with outputs far off the
targets; with Kaiming heads some seeds of a narrow network started with mean distances of 4
(targets lie in [-1, 1]), and the first large steps killed every ReLU of the last block. The
default (width 16, factor 3, depth 2) maps a 116x116x112 input to a 76x76x72 output, ~1.5e5 FLOP
per output voxel.

A 1x1 convolution commutes with nearest-neighbour upsampling, so it runs before the upsampling
(same result, 2^dims times fewer operations).

Valid output sizes are multiples of ``2**depth`` and the network is equivariant to shifts by that
multiple, so block-wise prediction with a ``margin`` halo reproduces whole-volume prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import nn

from pipeline.errors import InvalidInputError

HeadKind = Literal["logits", "linear"]
CONVS_PER_BLOCK = 2
KERNEL = 3
POOL = 2


@dataclass(frozen=True)
class HeadConfig:
    """One output channel: ``logits`` (a probability after sigmoid) or ``linear`` (a regression)."""

    name: str
    kind: HeadKind


DEFAULT_HEADS = (HeadConfig("probability", "logits"), HeadConfig("distance", "linear"))


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; ``width_factor`` multiplies the channels per level."""

    dims: int = 3
    in_channels: int = 1
    width: int = 16
    depth: int = 2
    width_factor: int = 3
    heads: tuple[HeadConfig, ...] = field(default=DEFAULT_HEADS)

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise InvalidInputError(f"U-Net dims must be 2 or 3, not {self.dims}")
        if min(self.in_channels, self.width, self.width_factor) < 1 or self.depth < 0:
            raise InvalidInputError("U-Net channels, width and width factor must be positive")
        names = [h.name for h in self.heads]
        if not names or len(set(names)) != len(names):
            raise InvalidInputError(f"U-Net heads need distinct names, got {names}")
        for head in self.heads:
            if head.kind not in ("logits", "linear"):
                raise InvalidInputError(f"head {head.name!r}: kind must be logits or linear")

    def channels(self, level: int) -> int:
        return int(self.width * self.width_factor**level)

    def _axis_output(self, n: int) -> int | None:
        shrink = CONVS_PER_BLOCK * (KERNEL - 1)
        for _ in range(self.depth):
            n -= shrink
            if n <= 0 or n % POOL:
                return None
            n //= POOL
        n -= shrink
        if n <= 0:
            return None
        for _ in range(self.depth):
            n = n * POOL - shrink
            if n <= 0:
                return None
        return n

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape; raises for invalid sizes."""
        if len(input_shape) != self.dims:
            raise InvalidInputError(f"input shape {input_shape} is not {self.dims}D")
        out = [self._axis_output(int(n)) for n in input_shape]
        if any(n is None for n in out):
            raise InvalidInputError(
                f"input shape {input_shape} is not valid for this U-Net: every pooling must see "
                f"an even size (try {self.valid_input_shape(tuple(1 for _ in input_shape))})"
            )
        return tuple(cast(int, n) for n in out)

    def _axis_input_for_bottom(self, m: int) -> int:
        shrink = CONVS_PER_BLOCK * (KERNEL - 1)
        n = m + shrink
        for _ in range(self.depth):
            n = n * POOL + shrink
        return n

    def valid_input_shape(self, min_output: tuple[int, ...]) -> tuple[int, ...]:
        """Smallest valid input shape whose output is at least ``min_output`` per axis."""
        if len(min_output) != self.dims:
            raise InvalidInputError(f"output shape {min_output} is not {self.dims}D")
        shape: list[int] = []
        for wanted in min_output:
            m = 1
            while True:
                n = self._axis_input_for_bottom(m)
                out = self._axis_output(n)
                if out is not None and out >= wanted:
                    shape.append(n)
                    break
                m += 1
        return tuple(shape)

    @property
    def margin(self) -> tuple[int, ...]:
        """Context voxels lost per side and axis: ``(input - output) / 2``."""
        inp = self.valid_input_shape((1,) * self.dims)
        out = self.output_shape(inp)
        return tuple((i - o) // 2 for i, o in zip(inp, out, strict=True))

    @property
    def output_multiple(self) -> int:
        """Valid output sizes and shift equivariance come in multiples of this."""
        return int(POOL**self.depth)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dims": self.dims,
            "in_channels": self.in_channels,
            "width": self.width,
            "depth": self.depth,
            "width_factor": self.width_factor,
            "heads": [{"name": h.name, "kind": h.kind} for h in self.heads],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = {"dims", "in_channels", "width", "depth", "width_factor", "heads"}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown U-Net settings: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in data.items() if k != "heads"}
        for key, value in values.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInputError(f"U-Net setting {key!r} must be an integer, not {value!r}")
        heads: tuple[HeadConfig, ...] = DEFAULT_HEADS
        if "heads" in data:
            raw = data["heads"]
            if not isinstance(raw, list | tuple) or not all(
                isinstance(h, dict) and set(h) == {"name", "kind"} for h in raw
            ):
                raise InvalidInputError("U-Net heads must be a list of {name, kind} entries")
            heads = tuple(HeadConfig(str(h["name"]), h["kind"]) for h in raw)
        return cls(**values, heads=heads)


def _conv(dims: int, cin: int, cout: int, kernel: int) -> nn.Module:
    return (nn.Conv3d if dims == 3 else nn.Conv2d)(cin, cout, kernel)


class _ConvBlock(nn.Sequential):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        layers: list[nn.Module] = []
        for i in range(CONVS_PER_BLOCK):
            layers += [_conv(dims, cin if i == 0 else cout, cout, KERNEL), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class _Up(nn.Module):
    """1x1 convolution then nearest-neighbour upsampling (the two commute)."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv(dims, cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(x), scale_factor=POOL, mode="nearest")


def _centre_crop(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    spatial = x.shape[2:]
    index = tuple(
        slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(spatial, shape, strict=True)
    )
    return x[(slice(None), slice(None), *index)]


class UNet(nn.Module):
    """``forward(x[N, C, *spatial]) -> {head name: tensor[N, 1, *output spatial]}``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dims
        self.down = nn.ModuleList(
            _ConvBlock(
                d, config.in_channels if i == 0 else config.channels(i - 1), config.channels(i)
            )
            for i in range(config.depth)
        )
        self.bottom = _ConvBlock(
            d,
            config.channels(config.depth - 1) if config.depth else config.in_channels,
            config.channels(config.depth),
        )
        self.up = nn.ModuleList(
            _Up(d, config.channels(i + 1), config.channels(i)) for i in range(config.depth)
        )
        self.decode = nn.ModuleList(
            _ConvBlock(d, 2 * config.channels(i), config.channels(i)) for i in range(config.depth)
        )
        self.pool = (nn.MaxPool3d if d == 3 else nn.MaxPool2d)(POOL)
        self.heads = nn.ModuleDict(
            {h.name: _conv(d, config.channels(0), 1, 1) for h in config.heads}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights (gain for ReLU), zero biases; heads all zero."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for head in self.heads.values():
            assert isinstance(head, nn.Conv2d | nn.Conv3d)
            nn.init.zeros_(head.weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for level in reversed(range(self.config.depth)):
            x = self.up[level](x)
            skip = _centre_crop(skips[level], tuple(x.shape[2:]))
            x = self.decode[level](torch.cat([skip, x], dim=1))
        return {name: head(x) for name, head in self.heads.items()}
