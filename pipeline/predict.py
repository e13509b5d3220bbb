"""Whole-volume U-Net prediction, block by block, into OME-Zarr probability and distance maps.

The output grid's blocks tile the volume; each is predicted from its block plus the U-Net's
``margin`` of context (the image mirrored at its edge outside it, as in training), always at the
full block size (edge blocks are cropped afterwards), so every call has the same shape. Block
sizes are valid U-Net outputs and the network is equivariant to shifts by its pooling period
(``UNetConfig.output_multiple``); a block whose corner is off that period (three or more
poolings along an axis) is predicted from a window starting at the period below, one period
longer, and cropped: block-wise prediction equals whole-volume prediction exactly (up to float
rounding).

Outputs are NGFF 0.5 images ``probability.ome.zarr`` (sigmoid, float32),
``distance.ome.zarr`` (nm, float32) and ``<head>.ome.zarr`` (sigmoid) for every other logits
(semantic) head, with chunks equal to the block, so concurrent blocks never
share a chunk. After a block's data are written, an empty marker file ``done/<index>`` records
it: a rerun (same parameters, checked against ``predict.json``) skips finished blocks. Blocks
whose region holds no voxel of the optional tissue mask are skipped and read back as the fill
values (probability 0, distance -clamp).

The input is normalised as the model file says (:mod:`pipeline.normalise`): a percentile model
maps this volume's own robust intensity range to [0, 1] (so a session three times brighter than
the training image gives the same inputs); the map is computed once, from a bounded sample of the
whole volume, before any block, and recorded in ``predict.json``. Older models apply the training
image's mean and std.

values (probability 0, distance -clamp). The marker holds the block's largest predicted distance
(nm), so :attr:`PredictResult.distance_max_nm` covers resumed blocks too: a distance map that
never reaches the seed threshold segments into nothing, and the CLI says so.

Test-time flips (``flips``; by default on for 2D models, off in 3D): each block is also predicted
mirrored along y, along x and along both, and the four outputs, mirrored back, are averaged. The
window's margins are symmetric, so every flipped output covers the same voxels. Four forward
passes cost four times the prediction, cheap on a 2D image, not on a large volume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipeline.blocks import Block, Grid, ReadableArray
from pipeline.errors import InvalidInputError
from pipeline.model_io import LoadedModel, load_model
from pipeline.normalise import Scaling
from pipeline.patches import read_normalised
from pipeline.plan import (
    ArrayRef,
    BlockPlan,
    LocalExecutor,
    file_identity,
    ref_from_dict,
    ref_to_dict,
    resolve,
    write_atomic,
)
from pipeline.progress import ProgressCallback, no_progress
from pipeline.torch_setup import (
    compile_for_inference,
    configure_backends,
    configure_threads,
    is_forking_pool,
    memory_format,
    to_memory_format,
)

PROBABILITY_HEAD = "probability"
DISTANCE_HEAD = "distance"
DEFAULT_BLOCK_EDGE = {3: 128, 2: 512}  # output voxels per axis; 3D: ~1.2 GB peak at width 16


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict_volume` wrote; ``blocks_resumed`` were finished by an earlier run."""

    probability_path: Path
    distance_path: Path
    blocks_done: int
    blocks_skipped: int
    blocks_resumed: int = 0
    block_shape: tuple[int, ...] = ()
    scaling: Scaling | None = None  # the intensity map applied: (x - offset) / scale
    distance_max_nm: float = math.nan  # over every predicted block (NaN: none predicted)
    semantic_paths: dict[str, Path] = field(default_factory=dict)  # extra logits heads


@dataclass(frozen=True)
class PredictPlan(BlockPlan):
    """One step, ``predict``: item ``g`` predicts the blocks of ``groups[g]`` as one batch.

    The groups are fixed when planning (blocks outside the tissue mask are left out), so a
    resumed or remote run numbers them alike; a group is done when all its blocks' markers exist.
    The model travels as its path (each worker process loads it once); ``model`` is kept only for
    in-process runs of a model that has no file.
    """

    kind: ClassVar[str] = "predict"
    steps: ClassVar[tuple[str, ...]] = ("predict",)

    model_path: str | None
    model: LoadedModel | None
    device: str
    image: Any  # array-like, or an ArrayRef
    out_dir: str
    grid: Grid
    groups: tuple[tuple[int, ...], ...]
    compile: bool
    num_threads: int | None
    scaling: Scaling
    semantic: tuple[str, ...] = ()  # extra logits heads, each written to <name>.ome.zarr
    flips: bool = False  # test-time flips along y and x, averaged

    def output(self, name: str) -> Any:
        return ArrayRef(str(Path(self.out_dir) / f"{name}.ome.zarr" / "s0"), writable=True).open()

    @property
    def done_dir(self) -> Path:
        return Path(self.out_dir) / "done"

    @property
    def work_dir(self) -> Path:
        return Path(self.out_dir)

    def items(self, step: str) -> int:
        return len(self.groups)

    def is_done(self, step: str, item: int) -> bool:
        return all((self.done_dir / str(i)).exists() for i in self.groups[item])

    def run_item(self, step: str, item: int) -> None:
        if step != "predict":
            raise KeyError(f"predict plan has no step {step!r}")
        _predict_blocks(self, [self.grid.block(i) for i in self.groups[item]])

    def to_dict(self) -> dict[str, Any]:
        if self.model_path is None:
            raise InvalidInputError("a plan for other processes needs the model as a file")
        return {
            "model": self.model_path,
            "device": self.device,
            "image": ref_to_dict(self.image, "image"),
            "out_dir": self.out_dir,
            "grid": self.grid.to_dict(),
            "groups": [list(g) for g in self.groups],
            "compile": self.compile,
            "num_threads": self.num_threads,
            "scaling": [self.scaling.offset, self.scaling.scale],
            "semantic": list(self.semantic),
            "flips": self.flips,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictPlan:
        threads = data["num_threads"]
        return cls(
            model_path=str(data["model"]),
            model=None,
            device=str(data["device"]),
            image=ref_from_dict(data["image"]),
            out_dir=str(data["out_dir"]),
            grid=Grid.from_dict(data["grid"]),
            groups=tuple(tuple(int(i) for i in g) for g in data["groups"]),
            compile=bool(data["compile"]),
            num_threads=None if threads is None else int(threads),
            scaling=Scaling(float(data["scaling"][0]), float(data["scaling"][1])),
            semantic=tuple(str(n) for n in data["semantic"]),
            flips=bool(data.get("flips", False)),
        )


_MODELS: dict[tuple[Any, ...], tuple[LoadedModel, torch.nn.Module]] = {}


def _model_for(job: PredictPlan) -> tuple[LoadedModel, torch.nn.Module]:
    """The job's model and its callable (channels-last, maybe compiled), cached per process."""
    # The file's identity too: a model retrained to the same path is loaded afresh.
    identity = file_identity(Path(job.model_path)) if job.model_path else ()
    key = (job.model_path or "in-memory", identity, job.device, job.compile)
    cached = _MODELS.get(key)
    if cached is not None and (job.model is None or cached[0] is job.model):
        return cached
    loaded = job.model
    if loaded is None:
        assert job.model_path is not None
        loaded = load_model(Path(job.model_path), job.device)
    fmt = memory_format(loaded.device, loaded.config.dims)
    module = to_memory_format(loaded.model, fmt).eval()
    if job.compile:
        module = compile_for_inference(module)
    _MODELS.clear()  # one model per process at a time
    _MODELS[key] = (loaded, module)
    return loaded, module


def _predict_blocks(job: PredictPlan, blocks: Sequence[Block]) -> int:
    """Predict and write a group of blocks (one batch); returns how many were written."""
    configure_threads(job.num_threads)
    loaded, module = _model_for(job)
    image = resolve(job.image)
    probability_out, distance_out = job.output(PROBABILITY_HEAD), job.output(DISTANCE_HEAD)
    configure_backends(loaded.device)
    margin = loaded.config.margin
    period = loaded.config.output_multiple
    # Shifts commute with the network only by its pooling period; with three or more poolings
    # along an axis valid block sizes are not multiples of it (depth 3: 4, 12, 20, ... period 8),
    # so such a block's window starts at the period below its corner and is a period longer
    # (still a valid output), and the block is cropped out of it.
    extra = tuple(0 if b % p == 0 else p for b, p in zip(job.grid.block_shape, period, strict=True))
    inputs, offsets = [], []
    for block in blocks:
        offset = tuple(c.start % p if e else 0 for c, p, e in zip(block.core, period, extra,
                                                                  strict=True))  # fmt: skip
        region = tuple(
            slice(c.start - o - m, c.start - o + b + e + m)
            for c, o, b, e, m in zip(block.core, offset, job.grid.block_shape, extra, margin,
                                     strict=True)
        )  # fmt: skip
        inputs.append(read_normalised(image, region, job.scaling.offset, job.scaling.scale))
        offsets.append(offset)
    fmt = memory_format(loaded.device, loaded.config.dims)
    stacked = np.stack(inputs)
    if stacked.ndim == loaded.config.dims + 1:  # one channel: add its axis
        stacked = stacked[:, None]
    batch = torch.from_numpy(stacked).to(loaded.device, memory_format=fmt)
    with torch.inference_mode():
        heads = _forward(module, batch, (PROBABILITY_HEAD, *job.semantic), job.flips)
        probability = heads[PROBABILITY_HEAD].cpu().numpy()
        distance = (heads[DISTANCE_HEAD] * loaded.clamp_nm).cpu().numpy()
        semantic = {name: heads[name].cpu().numpy() for name in job.semantic}
    for i, block in enumerate(blocks):
        crop = tuple(slice(o, o + n) for o, n in zip(offsets[i], block.core_shape, strict=True))
        probability_out[block.core] = probability[i][crop]
        distance_out[block.core] = distance[i][crop]
        for name, values in semantic.items():
            job.output(name)[block.core] = values[i][crop]
        write_atomic(job.done_dir / str(block.index), repr(float(distance[i][crop].max())))
    return len(blocks)


def _forward(
    module: torch.nn.Module, batch: torch.Tensor, logits: Sequence[str], flips: bool
) -> dict[str, torch.Tensor]:
    """Each head's first channel for ``batch`` (n, c, spatial...), the ``logits`` heads as
    probabilities, the others (distance: a fraction of the clamp) as they are. With ``flips``,
    the mean over the batch as is and mirrored along y, x and both (each output mirrored back)."""
    y, x = batch.ndim - 1 - 2, batch.ndim - 1 - 1  # of the outputs, which lose the channel axis
    combos: list[tuple[int, ...]] = [(), (y,), (x,), (y, x)] if flips else [()]
    sums: dict[str, torch.Tensor] = {}
    for axes in combos:
        outputs = module(torch.flip(batch, [a + 1 for a in axes]) if axes else batch)
        for name, out in outputs.items():
            value = out[:, 0].float()
            if name in logits:
                value = torch.sigmoid(value)
            if axes:
                value = torch.flip(value, axes)
            sums[name] = sums[name] + value if name in sums else value
    return {name: total / len(combos) for name, total in sums.items()}


def recorded_distance_max(done_dir: Path) -> float:
    """The largest distance the finished blocks' markers record (NaN when none records one;
    markers of older runs are empty)."""
    values = []
    for marker in done_dir.iterdir():
        if marker.name.startswith("."):  # a marker being written
            continue
        try:
            values.append(float(marker.read_text()))
        except ValueError:
            continue
    return max(values) if values else math.nan


def default_block_shape(model: LoadedModel, image_shape: Sequence[int]) -> tuple[int, ...]:
    """A valid output block near 128^3 (512^2 in 2D), no larger than the image needs."""
    config = model.config
    edge = DEFAULT_BLOCK_EDGE[config.dims]
    wanted = tuple(min(edge, int(n)) for n in image_shape)
    return config.output_shape(config.valid_input_shape(wanted))


def _check_block_shape(model: LoadedModel, block_shape: Sequence[int]) -> tuple[int, ...]:
    config = model.config
    block = tuple(int(b) for b in block_shape)
    if len(block) != config.dims or min(block) < 1:
        raise InvalidInputError(f"block shape {block} must have {config.dims} positive sizes")
    valid = config.output_shape(config.valid_input_shape(block))
    if valid != block:
        raise InvalidInputError(
            f"block shape {block} is not a valid U-Net output size; the nearest larger is {valid}"
        )
    return block


def _open_image(
    image: ReadableArray | ArrayRef, channels: int = 1
) -> tuple[ReadableArray, tuple[float, ...] | None]:
    """An array-like as-is, or a volume file (OME-Zarr level, .npy) with its voxel size in nm."""
    if not isinstance(image, ArrayRef):
        return image, None
    from pipeline.volumes import open_volume

    volume = open_volume(Path(image.path), image.level, channels=channels)
    return volume.array, volume.voxel_size


def _mask_region(
    core: tuple[slice, ...], image_shape: Sequence[int], mask_shape: Sequence[int]
) -> tuple[slice, ...]:
    """The mask voxels (same or coarser grid) covering a region of the image."""
    out = []
    for s, n, m in zip(core, image_shape, mask_shape, strict=True):
        start = math.floor(s.start * m / n)
        out.append(slice(start, max(start + 1, math.ceil(s.stop * m / n))))
    return tuple(out)


def _prepare_outputs(
    out_dir: Path, manifest: dict[str, Any], shape: tuple[int, ...], block: tuple[int, ...],
    voxel_size: Sequence[float], clamp_nm: float, semantic: Sequence[str] = (),
) -> None:  # fmt: skip
    """Create the outputs, or keep them when a run with the same parameters left them."""
    manifest_path = out_dir / "predict.json"
    prob_path, dist_path = out_dir / "probability.ome.zarr", out_dir / "distance.ome.zarr"
    semantic_paths = {name: out_dir / f"{name}.ome.zarr" for name in semantic}
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text())
        if previous != manifest:
            raise InvalidInputError(
                f"{out_dir} holds a prediction with other parameters: use another directory"
            )
        return
    if prob_path.exists() or dist_path.exists():
        raise InvalidInputError(f"{out_dir} already holds prediction outputs without a manifest")
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = tuple(min(b, n) for b, n in zip(block, shape, strict=True))
    from pipeline.ome_zarr_io import create_single_level_image

    common: dict[str, Any] = {"dtype": np.float32, "chunks": chunks, "voxel_size": voxel_size}
    create_single_level_image(prob_path, shape, name=PROBABILITY_HEAD, **common)
    create_single_level_image(dist_path, shape, name=DISTANCE_HEAD, fill_value=-clamp_nm, **common)
    for name, path in semantic_paths.items():
        create_single_level_image(path, shape, name=name, **common)
    (out_dir / "done").mkdir(exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1))


def plan_predict(
    model: LoadedModel | Path,
    image: ReadableArray | ArrayRef | Path,
    out_dir: Path,
    *,
    level: int = 0,
    block_shape: Sequence[int] | None = None,
    mask: ReadableArray | None = None,
    voxel_size: Sequence[float] | None = None,
    batch_size: int = 1,
    compile: bool = False,
    num_threads: int | None = None,
    device: str = "auto",
    scaling: Scaling | None = None,
    for_workers: bool = False,
    flips: bool | None = None,
) -> PredictPlan:
    """Check the inputs, create (or reopen) the outputs and plan the prediction.

    ``for_workers``: the blocks run in other processes, which load the model from its file on
    ``device`` (a process pool, Celery workers); otherwise the loaded model is used here.
    Arguments as :func:`predict_volume`; ``flips`` None: on for a 2D model (module doc).
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(Path(model), device)
    # The model's file, also when a loaded model was given: process-pool workers load it, and
    # predict.json names it so that `segment` reads the fitted settings recorded in it.
    model_path = None if loaded.path is None else str(loaded.path.resolve())
    config = loaded.config
    if PROBABILITY_HEAD not in {h.name for h in config.heads} or DISTANCE_HEAD not in {
        h.name for h in config.heads
    }:
        raise InvalidInputError("the model needs a probability and a distance head to predict")
    if isinstance(image, str | Path):
        image = ArrayRef(str(Path(image).resolve()), level, config.in_channels)
    array, recorded = _open_image(image, config.in_channels)
    full = tuple(int(n) for n in array.shape)
    shape = full[1:] if config.in_channels > 1 else full
    if len(shape) != config.dims or (config.in_channels > 1 and full[0] != config.in_channels):
        raise InvalidInputError(
            f"image shape {full} is not {config.dims}D"
            + (f" with {config.in_channels} channels first" if config.in_channels > 1 else "")
            + " as the model expects"
        )
    semantic = [h.name for h in config.heads if h.kind == "logits" and h.name != PROBABILITY_HEAD]
    block = (
        default_block_shape(loaded, shape)
        if block_shape is None
        else _check_block_shape(loaded, block_shape)
    )
    sizes = tuple(voxel_size or recorded or loaded.voxel_size)
    if mask is not None and (
        len(mask.shape) != len(shape)
        or any(m > n or m < 1 for m, n in zip(mask.shape, shape, strict=True))
    ):
        raise InvalidInputError(
            f"mask shape {tuple(mask.shape)} must be the image's {shape} or coarser"
        )
    if scaling is None:
        scaling = loaded.normalisation.scaling(array)
    manifest = {
        "shape": list(shape),
        "block_shape": list(block),
        "voxel_size": [float(v) for v in sizes],
        "model": model_path or "in-memory",
        "normalisation": loaded.normalisation.method,
        "mean": scaling.offset,  # the map applied: (x - mean) / std
        "std": scaling.scale,
        "clamp_nm": loaded.clamp_nm,
    }
    if flips is None:
        flips = config.dims == 2
    if flips:  # only then: predictions made before flips existed resume as they were
        manifest["flips"] = True
    out_dir = Path(out_dir).resolve()
    _prepare_outputs(out_dir, manifest, shape, block, sizes, loaded.clamp_nm, semantic)
    grid = Grid.of(shape, block)
    wanted = [
        b.index
        for b in grid.blocks()
        if mask is None or np.any(mask[_mask_region(b.core, shape, mask.shape)])
    ]
    size = max(1, batch_size)
    remote = for_workers and model_path is not None
    return PredictPlan(
        model_path=model_path,
        model=None if remote else loaded,
        device=device if for_workers else str(loaded.device),
        image=image,
        out_dir=str(out_dir),
        grid=grid,
        groups=tuple(tuple(wanted[i : i + size]) for i in range(0, len(wanted), size)),
        compile=compile,
        num_threads=num_threads,
        scaling=scaling,
        semantic=tuple(semantic),
        flips=flips,
    )


def predict_volume(
    model: LoadedModel | Path,
    image: ReadableArray | Path,
    out_dir: Path,
    *,
    level: int = 0,
    block_shape: Sequence[int] | None = None,
    mask: ReadableArray | None = None,
    voxel_size: Sequence[float] | None = None,
    executor: Any = None,
    batch_size: int = 1,
    compile: bool = False,
    num_threads: int | None = None,
    device: str = "auto",
    scaling: Scaling | None = None,
    flips: bool | None = None,
    progress: ProgressCallback = no_progress,
) -> PredictResult:
    """Predict probability and distance over ``image`` block by block (see the module doc).

    Plans with :func:`plan_predict` and runs the plan here (:class:`pipeline.plan.LocalExecutor`).
    ``model`` is a loaded model or a model file (a process pool needs a file: each worker loads
    it once). ``image`` is a (z, y, x) or (y, x) array-like or an OME-Zarr path (``level``);
    ``block_shape`` is the output block (default :func:`default_block_shape`); ``voxel_size``
    (nm) for the output metadata defaults to the OME-Zarr's, else the model's. ``scaling``
    overrides the intensity map the model's normalisation gives for ``image`` (pass the whole
    volume's when ``image`` is a crop of it). ``flips``: test-time flips (module doc); None
    turns them on for a 2D model.
    """
    if is_forking_pool(executor):
        raise InvalidInputError(
            "torch hangs in workers forked from a process that ran it: pass a pool from "
            "pipeline.torch_setup.inference_process_pool (fork server) instead"
        )
    plan = plan_predict(
        model, image, out_dir,
        level=level, block_shape=block_shape, mask=mask, voxel_size=voxel_size,
        batch_size=batch_size, compile=compile, num_threads=num_threads, device=device,
        scaling=scaling, for_workers=executor is not None, flips=flips,
    )  # fmt: skip
    planned = sum(len(g) for g in plan.groups)
    todo = plan.pending("predict")
    done = sum(len(plan.groups[g]) for g in todo)
    LocalExecutor(executor).execute(plan, progress)
    out = Path(plan.out_dir)
    return PredictResult(
        probability_path=out / "probability.ome.zarr",
        distance_path=out / "distance.ome.zarr",
        blocks_done=done,
        blocks_skipped=len(plan.grid) - planned,
        blocks_resumed=planned - done,
        block_shape=plan.grid.block_shape,
        scaling=plan.scaling,
        distance_max_nm=recorded_distance_max(plan.done_dir),
        semantic_paths={name: out / f"{name}.ome.zarr" for name in plan.semantic},
    )
