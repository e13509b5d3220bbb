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

Anisotropic voxels: ``UNetConfig.pool`` (per level, per axis: 1 or 2) and ``kernel`` (per level
and the bottom, per axis: odd) replace the isotropic 2 and 3 where given, so a long z voxel is
neither pooled past the objects' size nor convolved over a z extent far larger than the xy one
(:func:`pipeline.anisotropy.anisotropic_unet_config` chooses them from the voxel size). The
decoder upsamples by the same factors and uses the same kernels as the encoder at each level.

A 1x1 convolution commutes with nearest-neighbour upsampling, so it runs before the upsampling
(same result, 2^dims times fewer operations).

Valid output sizes are spaced by ``output_multiple`` (per axis, the product of that axis's
pooling factors: ``2**depth`` when isotropic) and the network is equivariant to shifts by that
multiple. With at most two poolings per axis (depth 2, the default) valid outputs are multiples
of it, so block-wise prediction with a ``margin`` halo reproduces whole-volume prediction; from
three poolings on they are not (isotropic depth 3: 4, 12, 20, ... with a period of 8), so blocks
after the first sit off the pooling grid.
"""

from __future__ import annotations

import math
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


Factors = tuple[tuple[int, ...], ...]


def _factors(raw: Any, what: str) -> Factors:
    """Nested lists or tuples of integers (a parsed file) as a tuple of tuples."""
    if not isinstance(raw, list | tuple) or not all(
        isinstance(level, list | tuple)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in level)
        for level in raw
    ):
        raise InvalidInputError(f"U-Net {what} must be a list of per-axis integer lists")
    return tuple(tuple(int(v) for v in level) for level in raw)


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; ``width_factor`` multiplies the channels per level.

    ``pool`` gives, per level (``depth`` entries), the max-pool factor per axis (1 or 2);
    ``kernel`` gives, per level and then the bottom block (``depth + 1`` entries), the
    convolution size per axis (odd). ``None`` means the isotropic 2 and 3 of the published
    network, and model files written without them load as such.
    """

    dims: int = 3
    in_channels: int = 1
    width: int = 16
    depth: int = 2
    width_factor: int = 3
    heads: tuple[HeadConfig, ...] = field(default=DEFAULT_HEADS)
    pool: tuple[tuple[int, ...], ...] | None = None
    kernel: tuple[tuple[int, ...], ...] | None = None

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
        if self.pool is not None:
            pool = _factors(self.pool, "pool")
            object.__setattr__(self, "pool", pool)
            if len(pool) != self.depth or any(len(p) != self.dims for p in pool):
                raise InvalidInputError(
                    f"U-Net pool {pool} needs {self.depth} levels of {self.dims} factors"
                )
            if any(v not in (1, POOL) for p in pool for v in p):
                raise InvalidInputError(f"U-Net pool factors must be 1 or {POOL}, got {pool}")
        if self.kernel is not None:
            kernel = _factors(self.kernel, "kernel")
            object.__setattr__(self, "kernel", kernel)
            if len(kernel) != self.depth + 1 or any(len(k) != self.dims for k in kernel):
                raise InvalidInputError(
                    f"U-Net kernel {kernel} needs {self.depth + 1} levels (the last is the "
                    f"bottom) of {self.dims} sizes"
                )
            if any(v < 1 or v % 2 == 0 for k in kernel for v in k):
                raise InvalidInputError(f"U-Net kernel sizes must be odd and positive: {kernel}")

    @property
    def pools(self) -> Factors:
        """Pool factors per level and axis (the isotropic 2 when ``pool`` is not given)."""
        return self.pool if self.pool is not None else ((POOL,) * self.dims,) * self.depth

    @property
    def kernels(self) -> Factors:
        """Kernel sizes per level and axis, the bottom block last (3 when not given)."""
        return (
            self.kernel if self.kernel is not None else ((KERNEL,) * self.dims,) * (self.depth + 1)
        )

    def channels(self, level: int) -> int:
        return int(self.width * self.width_factor**level)

    def _shrink(self, level: int, axis: int) -> int:
        return CONVS_PER_BLOCK * (self.kernels[level][axis] - 1)

    def _axis_output(self, axis: int, n: int) -> int | None:
        for level in range(self.depth):
            n -= self._shrink(level, axis)
            pool = self.pools[level][axis]
            if n <= 0 or n % pool:
                return None
            n //= pool
        n -= self._shrink(self.depth, axis)
        if n <= 0:
            return None
        for level in reversed(range(self.depth)):
            n = n * self.pools[level][axis] - self._shrink(level, axis)
            if n <= 0:
                return None
        return n

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape; raises for invalid sizes."""
        if len(input_shape) != self.dims:
            raise InvalidInputError(f"input shape {input_shape} is not {self.dims}D")
        out = [self._axis_output(a, int(n)) for a, n in enumerate(input_shape)]
        if any(n is None for n in out):
            raise InvalidInputError(
                f"input shape {input_shape} is not valid for this U-Net (pool {self.pools}, "
                f"kernel {self.kernels}): every pooling must see a size it divides; the nearest "
                f"larger valid shape is {self.valid_input_at_least(input_shape)}"
            )
        return tuple(cast(int, n) for n in out)

    def _axis_input_for_bottom(self, axis: int, m: int) -> int:
        n = m + self._shrink(self.depth, axis)
        for level in reversed(range(self.depth)):
            n = n * self.pools[level][axis] + self._shrink(level, axis)
        return n

    def _axis_search(self, axis: int, input_at_least: int, output_at_least: int) -> int:
        """Smallest valid input along ``axis`` meeting both bounds (valid inputs grow with m)."""
        m = 1
        while True:
            n = self._axis_input_for_bottom(axis, m)
            out = self._axis_output(axis, n)
            if n >= input_at_least and out is not None and out >= output_at_least:
                return n
            m += 1

    def valid_input_shape(self, min_output: tuple[int, ...]) -> tuple[int, ...]:
        """Smallest valid input shape whose output is at least ``min_output`` per axis."""
        if len(min_output) != self.dims:
            raise InvalidInputError(f"output shape {min_output} is not {self.dims}D")
        return tuple(self._axis_search(a, 1, int(n)) for a, n in enumerate(min_output))

    def valid_input_at_least(self, min_input: tuple[int, ...]) -> tuple[int, ...]:
        """Smallest valid input shape at least ``min_input`` per axis."""
        if len(min_input) != self.dims:
            raise InvalidInputError(f"input shape {min_input} is not {self.dims}D")
        return tuple(self._axis_search(a, int(n), 1) for a, n in enumerate(min_input))

    @property
    def margin(self) -> tuple[int, ...]:
        """Context voxels lost per side and axis: ``(input - output) / 2``."""
        inp = self.valid_input_shape((1,) * self.dims)
        out = self.output_shape(inp)
        return tuple((i - o) // 2 for i, o in zip(inp, out, strict=True))

    @property
    def output_multiple(self) -> tuple[int, ...]:
        """Per axis: valid output sizes are spaced by this, and shifts by it commute."""
        return tuple(
            math.prod(self.pools[level][a] for level in range(self.depth)) for a in range(self.dims)
        )

    @property
    def is_isotropic(self) -> bool:
        """Whether pooling and kernels are the published isotropic 2 and 3."""
        return self.pools == ((POOL,) * self.dims,) * self.depth and self.kernels == (
            (KERNEL,) * self.dims,
        ) * (self.depth + 1)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dims": self.dims,
            "in_channels": self.in_channels,
            "width": self.width,
            "depth": self.depth,
            "width_factor": self.width_factor,
            "heads": [{"name": h.name, "kind": h.kind} for h in self.heads],
        }
        # Written only when given, so isotropic model files stay as they were.
        if self.pool is not None:
            data["pool"] = [list(p) for p in self.pool]
        if self.kernel is not None:
            data["kernel"] = [list(k) for k in self.kernel]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        factors = {"pool", "kernel"}
        known = {"dims", "in_channels", "width", "depth", "width_factor", "heads", *factors}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown U-Net settings: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in data.items() if k not in {"heads", *factors}}
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
        pool, kernel = (
            None if data.get(k) is None else _factors(data[k], k) for k in ("pool", "kernel")
        )
        return cls(**values, heads=heads, pool=pool, kernel=kernel)


def _conv(dims: int, cin: int, cout: int, kernel: int | tuple[int, ...]) -> nn.Module:
    size: Any = kernel  # one size per spatial axis
    return (nn.Conv3d if dims == 3 else nn.Conv2d)(cin, cout, size)


class _ConvBlock(nn.Sequential):
    def __init__(self, dims: int, cin: int, cout: int, kernel: tuple[int, ...]) -> None:
        layers: list[nn.Module] = []
        for i in range(CONVS_PER_BLOCK):
            layers += [_conv(dims, cin if i == 0 else cout, cout, kernel), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class _Up(nn.Module):
    """1x1 convolution then nearest-neighbour upsampling by ``scale`` (the two commute)."""

    def __init__(self, dims: int, cin: int, cout: int, scale: tuple[int, ...]) -> None:
        super().__init__()
        self.conv = _conv(dims, cin, cout, 1)
        self.scale = tuple(float(s) for s in scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(x), scale_factor=self.scale, mode="nearest")


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
        pools, kernels = config.pools, config.kernels
        self.down = nn.ModuleList(
            _ConvBlock(
                d,
                config.in_channels if i == 0 else config.channels(i - 1),
                config.channels(i),
                kernels[i],
            )
            for i in range(config.depth)
        )
        self.bottom = _ConvBlock(
            d,
            config.channels(config.depth - 1) if config.depth else config.in_channels,
            config.channels(config.depth),
            kernels[config.depth],
        )
        self.up = nn.ModuleList(
            _Up(d, config.channels(i + 1), config.channels(i), pools[i])
            for i in range(config.depth)
        )
        self.decode = nn.ModuleList(
            _ConvBlock(d, 2 * config.channels(i), config.channels(i), kernels[i])
            for i in range(config.depth)
        )
        # No parameters: old model files (one shared pooling module) load unchanged.
        self.pools = nn.ModuleList(
            (nn.MaxPool3d if d == 3 else nn.MaxPool2d)(pools[i]) for i in range(config.depth)
        )
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
        for block, pool in zip(self.down, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for level in reversed(range(self.config.depth)):
            x = self.up[level](x)
            skip = _centre_crop(skips[level], tuple(x.shape[2:]))
            x = self.decode[level](torch.cat([skip, x], dim=1))
        return {name: head(x) for name, head in self.heads.items()}
