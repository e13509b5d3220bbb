"""Training the U-Net on ground-truth boxes: data, loss, early stopping, checkpoints, history.

Targets per box come from :func:`pipeline.targets.instance_targets`. The loss is, per head,
a class-weighted binary cross-entropy on the logits heads (weights ``N / (2 N_class)`` over all
boxes, so both classes weigh the same in total) plus the mean squared error of the linear
``distance`` head against ``distance / clamp_nm`` (in [-1, 1], so the two terms have comparable
size; the model file records ``clamp_nm`` to scale predictions back to nm). ``clamp_nm: auto``
(the default) takes the clamp from the ground truth's objects (1.5 x their median equivalent
radius, :func:`pipeline.segment_params.derive_segment_params`): a fixed 4 um clamp leaves small
objects' distances a sliver of the output range and cuts large ones short. Only voxels inside the
boxes count. Adam at ``lr``; boxes split 80:20 into training and validation by box (a single box
is split along its longest axis). Each epoch is ``iterations_per_epoch`` batches of random,
augmented patches, then the loss over a fixed set of validation windows; training stops after
``patience`` epochs without improvement. With ``contact_weight`` > 0 (default 0, off: the
published loss), voxels within ``contact_nm`` of an interface between two touching objects weigh
``1 + contact_weight`` in every head's loss: the separating dip of the distance map there decides
whether touching nuclei get one seed each, and it is a small share of all voxels. With
``border_weight`` > 0 (default 0), background voxels in narrow gaps between objects (touching
objects are first separated by their one-voxel line) weigh more by the U-Net border weight map of
:mod:`pipeline.loss_weights` (``w0`` = ``border_weight``, sigma ``border_nm``); with both, the
weights add. Two guards for
learning rates above the published 1e-4 (off by default): a linear warm-up over
``warmup_steps``, gradient-norm clipping at ``grad_clip_norm``, and ``lr_schedule: cosine`` (decay
to zero by the last epoch; at a constant 3e-3 the validation loss of a small network jumped about
until the end, and the epoch that happened to be best varied a lot between seeds). ``best.pt`` (a
model file) holds the best weights, ``last.pt`` everything needed to resume (weights, optimiser,
history, random states). Extra logits heads are semantic heads (a mask per head in
``TrainingBox.semantic``); with them the heads' losses are balanced (``task_balance``, see
:func:`masked_loss`). An image with ``unet.in_channels`` > 1 has its channels first.

Each training image is normalised by its own robust intensity range (``normalisation``, default
the 1st and 99.8th percentiles to 0 and 1, see :mod:`pipeline.normalise`), as prediction will
normalise each volume it is applied to; the model file records the method and percentiles.
``normalisation: {method: meanstd}`` restores the former single mean and std over the boxes.
Augmentation (``augment``, settings in ``augmentation``) adds intensity changes (gamma, contrast
and brightness, noise, blur) to the mirrors and rotations, so that a model holds on a session
with other contrast and noise.

Every ``val_interval`` epochs (default 1; 0: off) the validation boxes are also segmented and
scored at object level (:mod:`pipeline.training_validation`); ``best.pt`` is then the epoch with
the best validation F1, where F1s within a standard error of the best so far
(:meth:`Trainer.f1_tolerance`) count as equal and the lower validation loss wins among them:
with a few dozen validation objects one object more or less is noise, and on a real 2D set
(BBBC038, 3 seeds) the epoch of the strictly best F1 scored 0.64-0.85 on the held-out image, no
better than the epoch of the lowest loss (0.78-0.81). (Averaging each epoch's F1 with the two
before it did not help there, and in a short training it credited a late epoch with an early
one's F1.) With ``ema_decay`` > 0 an exponential moving average of the weights
(:func:`moving_average`, PyTorch's ``AveragedModel``) is what is validated and kept; the
optimiser still steps the weights as trained, and ``last.pt`` holds both.
Training stops after ``patience`` epochs in which neither the validation F1 rose above its best
nor the validation loss fell 1% below its lowest (``LOSS_MIN_DELTA``): counting F1 gains alone
stopped one such run after 24 of the 57 epochs that still helped, and every new low, however
small, would keep a run going through the cosine schedule's tail, where the lr is near zero. The
loss decides alone when there are no validation boxes or no objects in them. After
``health_epochs`` (default 3; later if the warm-up is longer; 0: off) the heads must separate
objects from background on the training and validation boxes (:mod:`pipeline.training_health`);
a failing check waits another epoch, up to ``health_epochs`` more, while the training figures
still rise clearly (slow learning at a low lr, not a stuck network); if not, training restarts
from a new seed (:func:`attempt_seed`; not ``seed + 1``, which is another run's own seed, so a
restarted run would repeat it), at most ``max_restarts`` times, then raises
:class:`~pipeline.errors.TrainingFailedError`. ``history.csv`` has one row per epoch of every
attempt (losses, validation F1/precision/recall/objects, the health figures); each row also
goes to the ``metrics`` callback of :func:`train` as it is written.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, cast

import edt
import numpy as np
import torch
from torch import nn

from pipeline.augment import AugmentConfig, augment_sample
from pipeline.blocks import ReadableArray
from pipeline.errors import InvalidInputError, TrainingFailedError
from pipeline.loss_weights import border_weights
from pipeline.model_io import model_from_payload, model_payload, parent_state_dict, save_model
from pipeline.normalise import Normalisation, Scaling
from pipeline.patches import (
    PreparedBox,
    Sample,
    box_region,
    extract_sample,
    random_window,
    tiling_windows,
)
from pipeline.progress import TRAINING_STEPS, ProgressCallback, no_progress
from pipeline.segment_params import derive_segment_params
from pipeline.targets import instance_targets, separate_touching
from pipeline.torch_setup import (
    choose_device,
    configure_backends,
    configure_threads,
    memory_format,
    to_memory_format,
)
from pipeline.training_health import (
    FigureMedian,
    HeadFigures,
    Restart,
    failure_message,
    head_figures,
    health_problems,
)
from pipeline.training_history import HISTORY_FIELDS
from pipeline.training_validation import (
    BoxCanvas,
    box_context,
    nan_scores,
    score_boxes,
    validation_params,
)
from pipeline.unet import UNet, UNetConfig

# F1s within this many objects' errors (of the validation boxes' objects) of the best count as ties.
F1_TIE_ERRORS = 2
# A new lowest loss counts as progress for early stopping only when 1% below the last.
LOSS_MIN_DELTA = 0.01
PROBABILITY_HEAD = "probability"
DISTANCE_HEAD = "distance"
# Called with each epoch's history row as it is written (the site plots them live).
EpochCallback = Callable[[Mapping[str, float]], None]
CHECKPOINT_VERSION = 1
STATISTICS_SLAB_VOXELS = 1 << 24
WEIGHT_KEY = "_loss_weight"  # extra per-voxel loss weight, carried along with the targets
FIGURE_STEPS = 8  # the training health figures come from the last batches of each epoch
# A failing health check waits another epoch while a training figure still rises this much.
PROGRESS_DISTANCE_FRACTION = 0.5  # of the seed threshold
PROGRESS_GAP = 0.02
# Default patches: the published 3D one (output 76 x 76 x 72 at depth 2); in 2D a patch whose
# output is at least 212 x 212 for the configured network (252 x 252 at depth 2, close to the
# 256 x 256 tiles 2D nuclei models train on), so ``dims: 2`` alone gives a valid 2D setup.
DEFAULT_PATCH_3D = (116, 116, 112)
OUTPUT_2D = (212, 212)


@dataclass(frozen=True)
class TrainingBox:
    """A ground-truth box in a whole image: ``box`` is ``(z0, y0, x0, z1, y1, x1)`` in voxels.

    ``labels`` (instance ids, same shape as the image) need only be right inside the box.
    ``semantic`` gives, for extra logits heads, a mask array per head name. ``voxel_size``
    (nm) is the box's image's own, when a training set mixes scales (default: the config's).
    """

    image: ReadableArray
    labels: ReadableArray
    box: tuple[int, ...]
    name: str
    semantic: Mapping[str, ReadableArray] | None = None
    voxel_size: tuple[float, ...] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Training parameters; ``patch_shape`` is the input patch (a valid U-Net input)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    patch_shape: tuple[int, ...] = ()  # () = for unet.dims: DEFAULT_PATCH_3D or OUTPUT_2D's input
    voxel_size: tuple[float, ...] | None = None
    batch_size: int = 4
    lr: float = 1e-4
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # or "cosine": decay to 0 over max_epochs after the warm-up
    grad_clip_norm: float | None = None
    max_epochs: int = 100
    iterations_per_epoch: int = 50
    patience: int = 10
    val_fraction: float = 0.2
    max_val_patches: int = 32
    seed: int = 0
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    normalisation: Normalisation = field(default_factory=Normalisation)
    clamp_nm: float | Literal["auto"] = "auto"  # auto: derived from the ground truth's objects
    contact_weight: float = 0.0
    contact_nm: float = 1000.0
    border_weight: float = 0.0  # w0 of the U-Net border weight map (0: off)
    border_nm: float = 500.0  # its sigma (nm)
    val_interval: int = 1  # epochs between object-level validations (0: loss only)
    health_epochs: int = 3  # epochs before the heads' health check (0: no check)
    max_restarts: int = 2  # restarts from a new seed when the check fails
    task_balance: bool | None = None  # masked_loss(balance=); default: on with semantic heads
    num_threads: int | None = None
    device: str = "auto"
    # Validate and keep an exponential moving average of the weights (its decay; 0: off, the
    # weights as trained). The decay warms up as min(decay, (1 + n) / (10 + n)) after n steps.
    ema_decay: float = 0.0
    # Fine-tuning: a model file whose weights training starts from (its U-Net is used whole;
    # the normalisation is measured on the new boxes, as for a fresh model).
    init_model: Path | None = None

    def __post_init__(self) -> None:
        # One value stands for every axis (as config files allow).
        dims = self.unet.dims
        if not self.patch_shape:
            default = DEFAULT_PATCH_3D if dims == 3 else self.unet.valid_input_shape(OUTPUT_2D)
            object.__setattr__(self, "patch_shape", default)
        if len(self.patch_shape) == 1:
            object.__setattr__(self, "patch_shape", tuple(self.patch_shape) * dims)
        if self.voxel_size is not None and len(self.voxel_size) == 1:
            object.__setattr__(self, "voxel_size", tuple(self.voxel_size) * dims)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unet"] = self.unet.to_dict()
        if self.init_model is not None:
            data["init_model"] = str(self.init_model)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from plain values (a parsed config file); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown training settings: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "unet" in values:
            values["unet"] = UNetConfig.from_dict(dict(values["unet"]))
        if isinstance(values.get("augmentation"), Mapping):
            values["augmentation"] = AugmentConfig.from_dict(values["augmentation"])
        if isinstance(values.get("normalisation"), Mapping):
            values["normalisation"] = Normalisation.from_dict(values["normalisation"])
        if values.get("init_model") is not None:
            values["init_model"] = Path(values["init_model"])
        for key in ("patch_shape", "voxel_size"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    """Where training left its files, and how it went."""

    best_checkpoint: Path
    last_checkpoint: Path
    history_csv: Path
    history_png: Path
    best_val_loss: float
    epochs: int
    best_epoch: int = 0
    best_val_f1: float = math.nan  # NaN: selected by loss (no validation objects)
    val_objects: float = math.nan  # objects the kept model segments in the validation boxes
    attempts: int = 1
    restarts: tuple[Restart, ...] = ()
    seed_threshold_nm: float = math.nan  # used by validation and the health check
    history: tuple[Mapping[str, float], ...] = ()  # the rows of history.csv
    f1_tolerance: float = math.nan  # validation F1s this close to the best counted as ties


@dataclass(frozen=True)
class ClassWeights:
    """Per-voxel BCE weights of background and foreground."""

    background: float
    foreground: float


def class_weights(foregrounds: Sequence[np.ndarray]) -> ClassWeights:
    """Weights inversely proportional to each class's share of all voxels: ``N / (2 N_c)``."""
    total = sum(int(f.size) for f in foregrounds)
    positive = sum(int(np.count_nonzero(f)) for f in foregrounds)
    if positive == 0:
        raise InvalidInputError("the ground truth is empty: no object voxel in any box")
    if positive == total:
        raise InvalidInputError("the ground truth has no background voxel in any box")
    return ClassWeights(total / (2.0 * (total - positive)), total / (2.0 * positive))


def check_config(config: TrainConfig) -> tuple[int, ...]:
    """Validate the configuration; return the output window shape."""
    dims = config.unet.dims
    if config.voxel_size is None or len(config.voxel_size) != dims:
        raise InvalidInputError(f"voxel_size needs {dims} values (nm), got {config.voxel_size}")
    if len(config.patch_shape) != dims:
        raise InvalidInputError(f"patch_shape {config.patch_shape} is not {dims}D")
    if config.batch_size < 1 or config.iterations_per_epoch < 1 or config.max_epochs < 1:
        raise InvalidInputError("batch_size, iterations_per_epoch and max_epochs must be >= 1")
    if not 0.0 <= config.val_fraction < 1.0 or config.patience < 1 or config.lr <= 0:
        raise InvalidInputError("need 0 <= val_fraction < 1, patience >= 1 and lr > 0")
    if not 0.0 <= config.ema_decay < 1.0:
        raise InvalidInputError(f"ema_decay must be in [0, 1), not {config.ema_decay}")
    if config.clamp_nm != "auto" and (isinstance(config.clamp_nm, str) or not config.clamp_nm > 0):
        raise InvalidInputError(f"clamp_nm must be positive (nm) or auto, not {config.clamp_nm!r}")
    if config.contact_weight < 0 or config.contact_nm <= 0:
        raise InvalidInputError("need contact_weight >= 0 and contact_nm > 0")
    if config.border_weight < 0 or config.border_nm <= 0:
        raise InvalidInputError("need border_weight >= 0 and border_nm > 0")
    if min(config.val_interval, config.health_epochs, config.max_restarts) < 0:
        raise InvalidInputError("need val_interval, health_epochs and max_restarts >= 0")
    if config.warmup_steps < 0 or (
        config.grad_clip_norm is not None and config.grad_clip_norm <= 0
    ):
        raise InvalidInputError("need warmup_steps >= 0 and grad_clip_norm > 0 (or unset)")
    if config.lr_schedule not in ("constant", "cosine"):
        raise InvalidInputError(
            f"lr_schedule must be constant or cosine, not {config.lr_schedule!r}"
        )
    heads = {h.name: h.kind for h in config.unet.heads}
    if heads.get(DISTANCE_HEAD, "linear") != "linear":
        raise InvalidInputError("the distance head must be linear")
    extra_linear = [n for n, k in heads.items() if k == "linear" and n != DISTANCE_HEAD]
    if extra_linear:
        raise InvalidInputError(f"no training target for linear heads {extra_linear}")
    return config.unet.output_shape(tuple(config.patch_shape))


def resolve_clamp(config: TrainConfig, boxes: Sequence[TrainingBox]) -> TrainConfig:
    """The config with ``clamp_nm: auto`` replaced by the clamp derived from the boxes' objects."""
    if not isinstance(config.clamp_nm, str):
        return config
    assert config.voxel_size is not None
    labels = [np.asarray(b.labels[box_region(b.box, b.labels.shape)]) for b in boxes]
    if not any(a.any() for a in labels):
        raise InvalidInputError("the ground truth is empty: no object in any box (clamp_nm: auto)")
    clamp = derive_segment_params(labels, tuple(config.voxel_size)).clamp_nm
    return replace(config, clamp_nm=clamp)


def attempt_seed(seed: int, attempt: int) -> int:
    """The random seed of a training attempt: ``seed`` first, then one drawn from (seed, attempt)
    for each restart, so that no restart repeats another seed's first attempt."""
    if attempt == 0:
        return seed
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def split_boxes(
    boxes: Sequence[TrainingBox], val_fraction: float, seed: int
) -> tuple[list[TrainingBox], list[TrainingBox]]:
    """Split by box (seeded); a single box is cut along its longest axis instead."""
    if not boxes:
        raise InvalidInputError("no training boxes")
    if val_fraction == 0:
        return list(boxes), []
    if len(boxes) == 1:
        box = boxes[0]
        ndim = len(box.box) // 2
        sizes = [box.box[ndim + a] - box.box[a] for a in range(ndim)]
        axis = int(np.argmax(sizes))
        cut = box.box[axis] + max(1, round(sizes[axis] * (1 - val_fraction)))
        if sizes[axis] < 2:
            raise InvalidInputError(f"box {box.name} is too small to split for validation")
        train_box = list(box.box)
        val_box = list(box.box)
        train_box[ndim + axis] = cut
        val_box[axis] = cut
        return (
            [replace(box, box=tuple(train_box), name=f"{box.name}:train")],
            [replace(box, box=tuple(val_box), name=f"{box.name}:val")],
        )
    n_val = min(len(boxes) - 1, max(1, round(len(boxes) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(boxes))
    val = {int(i) for i in order[:n_val]}
    return (
        [b for i, b in enumerate(boxes) if i not in val],
        [b for i, b in enumerate(boxes) if i in val],
    )


def image_statistics(boxes: Sequence[TrainingBox]) -> tuple[float, float]:
    """Mean and standard deviation of the images over all boxes (float64 sums)."""
    count, total, squares = 0, 0.0, 0.0
    for box in boxes:
        ndim = len(box.box) // 2
        lead = (slice(None),) * (len(box.image.shape) - ndim)  # channels, pooled
        region = box_region(box.box, box.image.shape[len(lead) :])
        plane_size = math.prod(s.stop - s.start for s in region[1:])
        step = max(1, STATISTICS_SLAB_VOXELS // plane_size)  # bounded memory, whole chunks
        for start in range(region[0].start, region[0].stop, step):
            stop = min(start + step, region[0].stop)
            plane = np.asarray(box.image[(*lead, slice(start, stop), *region[1:])], np.float64)
            count += plane.size
            total += float(plane.sum())
            squares += float(np.square(plane).sum())
    mean = total / count
    std = math.sqrt(max(squares / count - mean * mean, 0.0))
    return mean, std if std > 0 else 1.0


def image_scalings(
    boxes: Sequence[TrainingBox], normalisation: Normalisation
) -> tuple[Normalisation, dict[int, Scaling]]:
    """The model's normalisation (with the training image's values) and each image's map.

    Maps are keyed by ``id(image)``: boxes of one image share it. ``percentile``: every image by
    its own range; the recorded values are the first box's image's (low, high). ``meanstd``
    without values: one mean and std over all boxes, as before percentiles.
    """
    if normalisation.method == "meanstd":
        mean, std = normalisation.values or image_statistics(boxes)
        fixed = replace(normalisation, values=(mean, std))
        return fixed, {id(b.image): Scaling(mean, std) for b in boxes}
    scalings: dict[int, Scaling] = {}
    for box in boxes:
        if id(box.image) not in scalings:
            scalings[id(box.image)] = normalisation.scaling(box.image)
    first = scalings[id(boxes[0].image)]
    values = (first.offset, first.offset + first.scale)
    return replace(normalisation, values=values), scalings


def contact_weights(
    labels: np.ndarray, voxel_size: tuple[float, ...], weight: float, radius_nm: float
) -> np.ndarray:
    """``1 + weight`` within ``radius_nm`` of an interface between touching objects, else 1."""
    border = ~separate_touching(labels) & (labels != 0)
    out = np.ones(labels.shape, dtype=np.float32)
    if border.any():
        near = edt.edt(
            np.ascontiguousarray(~border, dtype=np.uint8),
            anisotropy=tuple(float(v) for v in voxel_size),
            black_border=False,
            parallel=1,
        )
        out[near <= radius_nm] += np.float32(weight)
    return out


def spatial_shape(image: ReadableArray, unet: UNetConfig) -> tuple[int, ...]:
    """The spatial shape of a training image: channels come first when ``in_channels`` > 1."""
    shape = tuple(int(n) for n in image.shape)
    channels = unet.in_channels
    expected = unet.dims + (1 if channels > 1 else 0)
    if len(shape) != expected or (channels > 1 and shape[0] != channels):
        raise InvalidInputError(
            f"image shape {shape} is not {unet.dims}D"
            + (f" with {channels} channels first" if channels > 1 else "")
        )
    return shape[1:] if channels > 1 else shape


def prepare_box(box: TrainingBox, config: TrainConfig) -> PreparedBox:
    """Compute a box's targets (one float32 array per head, box-sized)."""
    spatial = spatial_shape(box.image, config.unet)
    if tuple(box.labels.shape) != spatial:
        raise InvalidInputError(
            f"box {box.name}: image {tuple(box.image.shape)} and labels "
            f"{tuple(box.labels.shape)} must have the same {config.unet.dims}D shape"
        )
    region = box_region(box.box, spatial)
    voxel_size = box.voxel_size or config.voxel_size
    assert voxel_size is not None
    clamp = float(resolve_clamp(config, [box]).clamp_nm)  # Trainer resolves over all boxes
    foreground, distance = instance_targets(
        np.asarray(box.labels[region]), tuple(voxel_size), clamp
    )
    targets: dict[str, np.ndarray] = {}
    for head in config.unet.heads:
        if head.name == PROBABILITY_HEAD:
            targets[head.name] = foreground
        elif head.name == DISTANCE_HEAD:
            targets[head.name] = distance / np.float32(clamp)
        else:
            if box.semantic is None or head.name not in box.semantic:
                raise InvalidInputError(f"box {box.name}: no mask for head {head.name!r}")
            targets[head.name] = (np.asarray(box.semantic[head.name][region]) > 0).astype(
                np.float32
            )
    if config.contact_weight > 0:
        targets[WEIGHT_KEY] = contact_weights(
            np.asarray(box.labels[region]),
            tuple(voxel_size),
            config.contact_weight,
            config.contact_nm,
        )
    if config.border_weight > 0:
        labels = np.asarray(box.labels[region])
        separated = np.where(separate_touching(labels), labels, 0)
        border = border_weights(
            separated, tuple(voxel_size), config.border_weight, config.border_nm
        )
        extra = targets.get(WEIGHT_KEY)
        targets[WEIGHT_KEY] = border if extra is None else extra + border - 1.0
    return PreparedBox(
        name=box.name, image=box.image, start=tuple(s.start for s in region), targets=targets
    )


def masked_loss(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    mask: torch.Tensor,
    kinds: Mapping[str, str],
    weights: Mapping[str, ClassWeights],
    balance: bool = False,
) -> torch.Tensor:
    """Sum over heads of the masked mean loss (weighted BCE on logits, MSE on linear heads).

    ``balance`` (several tasks at once, as the podometrics study's dual-output U-Net): each
    head's loss is divided by the loss a zero output would have on the same batch (ln 2 for a
    weighted-mean BCE, the weighted mean of target^2 for a linear head), so every task starts at
    1 and none dominates the gradient whatever its class balance or target scale; the class
    weights still balance the classes within each logits head.
    """
    denominator = mask.sum().clamp_min(1.0)
    if WEIGHT_KEY in targets:
        mask = mask * targets[WEIGHT_KEY]
    total = torch.zeros((), device=mask.device)
    for name, output in outputs.items():
        target = targets[name]
        if kinds[name] == "logits":
            w = weights[name]
            voxel_weight = torch.where(target > 0.5, w.foreground, w.background) * mask
            loss = nn.functional.binary_cross_entropy_with_logits(
                output, target, weight=voxel_weight, reduction="sum"
            )
            norm = voxel_weight.sum().clamp_min(1e-6) * math.log(2.0) if balance else denominator
        else:
            loss = (torch.square(output - target) * mask).sum()
            norm = (torch.square(target) * mask).sum().clamp_min(1e-6) if balance else denominator
        total = total + loss / norm
    return total


class _Batches:
    """Turns samples into device tensors in the model's memory format."""

    def __init__(self, device: torch.device, fmt: torch.memory_format) -> None:
        self.device = device
        self.format = fmt

    def tensor(self, arrays: Sequence[np.ndarray], channels: bool = False) -> torch.Tensor:
        stacked = np.stack(arrays)
        batch = torch.from_numpy(stacked if channels else stacked[:, None])
        return batch.to(self.device, memory_format=self.format, non_blocking=True)

    def collate(
        self, samples: Sequence[Sample]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        channels = samples[0].image.ndim > samples[0].mask.ndim
        image = self.tensor([s.image for s in samples], channels)
        names = samples[0].targets.keys()
        targets = {n: self.tensor([s.targets[n] for s in samples]) for n in names}
        return image, targets, self.tensor([s.mask for s in samples])


@dataclass
class _State:
    """What changes from epoch to epoch and goes into ``last.pt``."""

    epoch: int = 0  # within the current attempt
    best_loss: float = math.inf  # validation (else training) loss of the kept epoch
    best_f1: float = -math.inf
    best_epoch: int = 0
    best_objects: float = math.nan
    max_f1: float = -math.inf  # the best validation F1 of the attempt (the kept one may be lower)
    min_loss: float = math.inf  # the lowest validation (else training) loss of the attempt
    since_best: int = 0  # epochs without an F1 above its best or a loss 1% below
    history: list[dict[str, float]] = field(default_factory=list)  # every attempt's epochs
    attempt: int = 0
    restarts: list[Restart] = field(default_factory=list)
    healthy: bool = False  # the attempt passed its health check


def _write_history(history: Sequence[Mapping[str, float]], csv_path: Path, png_path: Path) -> None:
    """``history.csv`` (every attempt) and ``history.png`` (the current attempt: losses, and the
    validation F1, precision and recall when measured)."""
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, restval=math.nan)
        writer.writeheader()
        writer.writerows(history)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    attempt = history[-1].get("attempt", 0) if history else 0
    rows = [r for r in history if r.get("attempt", 0) == attempt]
    fig = Figure(figsize=(10.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax, scores = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in rows]
    ax.plot(epochs, [row["train_loss"] for row in rows], "o-", label="training")
    val = [row["val_loss"] for row in rows]
    if not all(math.isnan(v) for v in val):
        ax.plot(epochs, val, "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    for key, style in (("val_f1", "o-"), ("val_precision", "^--"), ("val_recall", "v--")):
        points = [(r["epoch"], r[key]) for r in rows if not math.isnan(r.get(key, math.nan))]
        if points:
            scores.plot(*zip(*points, strict=True), style, label=key.removeprefix("val_"))
    scores.set_xlabel("epoch")
    scores.set_ylabel("validation objects (IoU >= 0.5)")
    scores.set_ylim(-0.02, 1.02)
    if scores.lines:
        scores.legend()
    if attempt:
        fig.suptitle(f"attempt {int(attempt) + 1} (earlier attempts restarted: see history.csv)")
    fig.savefig(png_path)


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    inner = state["state"]
    # As strings: 128-bit integers are not plain values for torch's weights-only loader.
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in inner.items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _set_rng_state(rng: np.random.Generator, saved: Mapping[str, Any]) -> None:
    rng.bit_generator.state = {
        "bit_generator": saved["bit_generator"],
        "state": {k: int(v) for k, v in saved["state"].items()},
        "has_uint32": saved["has_uint32"],
        "uinteger": saved["uinteger"],
    }


def _box_labels(box: TrainingBox) -> np.ndarray:
    """The instance ids inside a box, as integers (segmentation and matching need them)."""
    labels = np.asarray(box.labels[box_region(box.box, box.labels.shape)])
    return labels if labels.dtype.kind in "iu" else labels.astype(np.int64)


def moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights (None with ``decay`` 0). Its decay
    warms up, so the average of the first steps is not held to the random start."""
    if decay <= 0.0:
        return None

    tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]

    def average(kept: tensors, new: tensors, count: torch.Tensor | int) -> None:
        # Every parameter at once, the decay read once per step (not once per tensor).
        n = float(count)
        torch._foreach_lerp_(kept, new, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average)


class Trainer:
    """One training run: prepared boxes, model, optimiser and the epoch loop."""

    def __init__(self, boxes: Sequence[TrainingBox], config: TrainConfig, out_dir: Path) -> None:
        self.output_shape = check_config(config)
        config = resolve_clamp(config, boxes)
        self.config = config
        self.out_dir = out_dir
        self.margin = config.unet.margin
        train_boxes, val_boxes = split_boxes(boxes, config.val_fraction, config.seed)
        self.normalisation, self.scalings = image_scalings(
            [*train_boxes, *val_boxes], config.normalisation
        )
        self.train_boxes = [prepare_box(b, config) for b in train_boxes]
        self.val_boxes = [prepare_box(b, config) for b in val_boxes]
        self.kinds = {h.name: h.kind for h in config.unet.heads}
        semantic = set(self.kinds) - {PROBABILITY_HEAD, DISTANCE_HEAD}
        self.balance = bool(semantic) if config.task_balance is None else config.task_balance
        everything = [*self.train_boxes, *self.val_boxes]
        self.weights = {
            name: class_weights([b.targets[name] for b in everything])
            for name, kind in self.kinds.items()
            if kind == "logits"
        }
        assert config.voxel_size is not None
        self.voxel_size = tuple(float(v) for v in config.voxel_size)
        self.val_labels = [_box_labels(b) for b in val_boxes]
        train_labels = [_box_labels(b) for b in train_boxes]
        self.segment_params = validation_params(
            derive_segment_params([*train_labels, *self.val_labels], self.voxel_size),
            float(config.clamp_nm),  # resolved above
        )
        self.val_contexts = [
            box_context(
                b.start,
                b.shape,
                tuple(b.image.shape)[-len(b.start) :],  # spatial: channels come first
                self.segment_params,
                self.voxel_size,
            )
            for b in self.val_boxes
        ]
        # Object-level validation needs the distance head and objects in the validation boxes.
        self.val_true_objects = 0.0  # objects in the validation boxes (known once scored)
        self.use_f1 = (
            config.val_interval > 0
            and DISTANCE_HEAD in self.kinds
            and any(labels.any() for labels in self.val_labels)
        )
        warmup_epochs = math.ceil(config.warmup_steps / config.iterations_per_epoch)
        self.health_epoch = (
            max(config.health_epochs, warmup_epochs + 1) if config.health_epochs > 0 else 0
        )
        self.device = choose_device(config.device)
        configure_threads(config.num_threads)
        configure_backends(self.device)
        self.format = memory_format(self.device, config.unet.dims)
        self.batches = _Batches(self.device, self.format)
        volumes = np.array([math.prod(b.shape) for b in self.train_boxes], dtype=np.float64)
        self.box_probability = volumes / volumes.sum()
        self.augment = config.augmentation if config.augment else None
        self.val_windows = self._validation_windows()
        self.state = _State()
        self._start_attempt(config.seed)
        self.epoch_figures = FigureMedian()

    def _start_attempt(self, seed: int) -> None:
        """A fresh model, optimiser and sampling stream from ``seed``."""
        torch.manual_seed(seed)
        self.model = UNet(self.config.unet)
        if self.config.init_model is not None:
            self.model.load_state_dict(parent_state_dict(self.config.init_model, self.config.unet))
        to_memory_format(self.model, self.format, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.ema = moving_average(self.model, self.config.ema_decay)
        self.rng = np.random.default_rng(seed)

    @property
    def eval_model(self) -> UNet:
        """The weights validated and kept: the moving average when there is one."""
        return self.model if self.ema is None else cast(UNet, self.ema.module)

    def _validation_windows(self) -> list[tuple[int, tuple[int, ...]]]:
        """(validation box index, window start): at most ``max_val_patches``, spread evenly."""
        windows = [
            (i, start)
            for i, box in enumerate(self.val_boxes)
            for start in tiling_windows(box.shape, self.output_shape)
        ]
        if len(windows) > self.config.max_val_patches:
            keep = np.linspace(0, len(windows) - 1, self.config.max_val_patches).round()
            windows = [windows[int(i)] for i in keep]
        return windows

    def scaling(self, box: PreparedBox) -> Scaling:
        """The intensity map of the box's image."""
        return self.scalings[id(box.image)]

    def _sample(self, box: PreparedBox, start: tuple[int, ...], augment: bool) -> Sample:
        scaling = self.scaling(box)
        sample = extract_sample(
            box, start, self.output_shape, self.margin, scaling.offset, scaling.scale
        )
        if not augment or self.augment is None:
            return sample
        names = list(sample.targets)
        # Channels after the first ride along as extra arrays: same geometry, no intensity change.
        extra = list(sample.image[1:]) if sample.image.ndim > sample.mask.ndim else []
        first = sample.image[0] if extra else sample.image
        image, arrays = augment_sample(
            first,
            [*extra, *(sample.targets[n] for n in names), sample.mask],
            self.rng,
            self.augment,
        )
        if extra:
            image = np.stack([image, *arrays[: len(extra)]])
            arrays = arrays[len(extra) :]
        return Sample(
            image=image, targets=dict(zip(names, arrays[:-1], strict=True)), mask=arrays[-1]
        )

    def _set_lr(self, step: int) -> None:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then constant or a cosine decay.

        A function of the step alone, so a resumed run continues the same schedule.
        """
        config = self.config
        warmup = config.warmup_steps
        if step < warmup:
            scale = (step + 1) / warmup
        elif config.lr_schedule == "cosine":
            total = config.max_epochs * config.iterations_per_epoch
            done = (step - warmup) / max(1, total - warmup)
            scale = 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
        else:
            scale = 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * scale

    def _figures(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor | np.ndarray],
        mask: torch.Tensor | np.ndarray | None,
    ) -> HeadFigures:
        """Health figures of a batch of outputs against its targets."""

        def array(value: torch.Tensor | np.ndarray) -> np.ndarray:
            if isinstance(value, torch.Tensor):
                return value.detach().float().cpu().numpy()
            return np.asarray(value)

        if PROBABILITY_HEAD in targets:
            foreground = array(targets[PROBABILITY_HEAD]) > 0.5
        elif DISTANCE_HEAD in targets:
            foreground = array(targets[DISTANCE_HEAD]) > 0
        else:
            return HeadFigures()
        distance = probability = None
        if DISTANCE_HEAD in outputs:
            distance = array(outputs[DISTANCE_HEAD]) * np.float32(self.config.clamp_nm)
        if self.kinds.get(PROBABILITY_HEAD) == "logits" and PROBABILITY_HEAD in outputs:
            probability = array(torch.sigmoid(outputs[PROBABILITY_HEAD]))
        return head_figures(
            foreground, distance, probability, None if mask is None else array(mask)
        )

    def _train_step(self, step: int, measure: bool = False) -> float:
        """One optimiser step; with ``measure``, the batch's health figures are kept too."""
        self._set_lr(step)
        samples = []
        for _ in range(self.config.batch_size):
            box = self.train_boxes[
                int(self.rng.choice(len(self.train_boxes), p=self.box_probability))
            ]
            start = random_window(self.rng, box.shape, self.output_shape)
            samples.append(self._sample(box, start, augment=True))
        image, targets, mask = self.batches.collate(samples)
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.model(image)
        loss = masked_loss(outputs, targets, mask, self.kinds, self.weights, self.balance)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.config.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if measure:
            with torch.no_grad():
                self.epoch_figures.add(self._figures(outputs, targets, mask))
        return float(loss.detach())

    def validate(self, segment: bool) -> dict[str, float]:
        """The validation loss over the fixed windows, and with ``segment`` the object scores and
        health figures of the validation boxes predicted whole (NaN where not measured)."""
        row = {"val_loss": math.nan, **nan_scores()}
        row["val_distance_p99_nm"] = row["val_probability_gap"] = math.nan
        if not self.val_boxes:
            return row
        self.eval_model.eval()
        with torch.inference_mode():
            row["val_loss"] = self._window_loss()
            if segment:
                row.update(self._score(self._predict_contexts()))
        self.model.train()
        return row

    def _window_loss(self) -> float:
        total = 0.0
        size = self.config.batch_size
        for first in range(0, len(self.val_windows), size):
            chunk = self.val_windows[first : first + size]
            samples = [self._sample(self.val_boxes[i], start, False) for i, start in chunk]
            image, targets, mask = self.batches.collate(samples)
            loss = masked_loss(
                self.eval_model(image), targets, mask, self.kinds, self.weights, self.balance
            )
            total += float(loss) * len(chunk)
        return total / len(self.val_windows)

    def _predict_contexts(self) -> dict[str, list[np.ndarray]]:
        """Distance (nm) and probability over each validation box's region (box plus halo),
        stitched from the model's output windows."""
        names = [n for n in (DISTANCE_HEAD, PROBABILITY_HEAD) if n in self.kinds]
        canvases = {n: [BoxCanvas(c.shape) for c in self.val_contexts] for n in names}
        windows = [
            (i, tuple(o + w for o, w in zip(context.offset, start, strict=True)))
            for i, context in enumerate(self.val_contexts)
            for start in tiling_windows(context.shape, self.output_shape)
        ]
        size = self.config.batch_size
        for first in range(0, len(windows), size):
            chunk = windows[first : first + size]
            samples = [self._sample(self.val_boxes[i], start, False) for i, start in chunk]
            channels = samples[0].image.ndim > samples[0].mask.ndim
            outputs = self.eval_model(self.batches.tensor([s.image for s in samples], channels))
            for name in names:
                values = outputs[name][:, 0].float()
                if name == DISTANCE_HEAD:
                    values = values * self.config.clamp_nm
                else:
                    values = torch.sigmoid(values)
                array = values.cpu().numpy()
                for k, (i, start) in enumerate(chunk):
                    region_start = tuple(
                        w - o for w, o in zip(start, self.val_contexts[i].offset, strict=True)
                    )
                    canvases[name][i].paste(region_start, array[k])
        return {n: [c.array for c in boxes] for n, boxes in canvases.items()}

    def _score(self, maps: Mapping[str, list[np.ndarray]]) -> dict[str, float]:
        """Object scores (when usable) and health figures of the stitched validation regions."""
        row: dict[str, float] = {}
        inner = [c.inner for c in self.val_contexts]
        distances = maps.get(DISTANCE_HEAD, [])
        probabilities = maps.get(PROBABILITY_HEAD, [])
        foreground = np.concatenate([(labels > 0).ravel() for labels in self.val_labels])
        figures = head_figures(
            foreground,
            np.concatenate([d[r].ravel() for d, r in zip(distances, inner, strict=True)])
            if distances
            else None,
            np.concatenate([p[r].ravel() for p, r in zip(probabilities, inner, strict=True)])
            if probabilities
            else None,
        )
        row["val_distance_p99_nm"] = figures.distance_p99_nm
        row["val_probability_gap"] = figures.probability_gap
        if self.use_f1:
            scores = score_boxes(
                distances, self.val_labels, self.val_contexts, self.segment_params, self.voxel_size
            )
            row.update(
                {
                    "val_f1": scores.f1,
                    "val_precision": scores.precision,
                    "val_recall": scores.recall,
                    "val_objects": float(scores.objects),
                    "val_seed_nm": scores.seed_threshold_nm,
                }
            )
            self.val_true_objects = float(scores.gt_objects)
        return row

    def validation_loss(self) -> float:
        """Mean loss over the fixed validation windows (NaN when there are none)."""
        return self.validate(segment=False)["val_loss"]

    def model_metadata(self) -> dict[str, Any]:
        state = self.state
        return {
            "clamp_nm": self.config.clamp_nm,
            "patch_shape": list(self.config.patch_shape),
            "output_shape": list(self.output_shape),
            "epoch": state.best_epoch or state.epoch,
            "val_loss": state.best_loss,
            "val_f1": None if math.isinf(state.best_f1) else state.best_f1,
            "val_objects": None if math.isnan(state.best_objects) else state.best_objects,
            "attempt": state.attempt,
            "seed": attempt_seed(self.config.seed, state.attempt),
            "validation_segment_params": self.segment_params.to_dict(),
            "train_boxes": [b.name for b in self.train_boxes],
            "val_boxes": [b.name for b in self.val_boxes],
        }

    def save_best(self, path: Path) -> None:
        save_model(
            path,
            self.eval_model,
            normalisation=self.normalisation,
            voxel_size=self.voxel_size,
            metadata=self.model_metadata(),
        )

    def save_checkpoint(self, path: Path) -> None:
        payload = {
            "checkpoint_version": CHECKPOINT_VERSION,
            "model": model_payload(
                self.model,
                normalisation=self.normalisation,
                voxel_size=self.voxel_size,
                metadata=self.model_metadata(),
            ),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "unet": self.config.unet.to_dict(),
            "epoch": self.state.epoch,
            "best_loss": self.state.best_loss,
            "best_f1": self.state.best_f1,
            "best_epoch": self.state.best_epoch,
            "best_objects": self.state.best_objects,
            "max_f1": self.state.max_f1,
            "min_loss": self.state.min_loss,
            "since_best": self.state.since_best,
            "history": self.state.history,
            "attempt": self.state.attempt,
            "restarts": [r.to_dict() for r in self.state.restarts],
            "healthy": self.state.healthy,
            "numpy_rng": _rng_state(self.rng),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InvalidInputError(f"{path}: cannot read the training checkpoint: {exc}")
        if payload.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise InvalidInputError(f"{path}: not a training checkpoint of this version")
        if payload["unet"] != self.config.unet.to_dict():
            raise InvalidInputError(f"{path}: the checkpoint's U-Net differs from the config")
        restored = model_from_payload(payload["model"], self.device)
        self.model.load_state_dict(restored.state_dict())
        to_memory_format(self.model, self.format)
        self.optimizer.load_state_dict(payload["optimizer"])
        saved_ema = payload.get("ema")
        if (saved_ema is not None) != (self.ema is not None):
            how = "with" if saved_ema is not None else "without"
            raise InvalidInputError(
                f"{path}: the checkpoint was trained {how} a moving average of the weights"
                " (ema_decay): resume with the same setting"
            )
        if self.ema is not None:
            self.ema.load_state_dict(saved_ema)
        self.state = _State(
            epoch=int(payload["epoch"]),
            best_loss=float(payload["best_loss"]),
            best_f1=float(payload.get("best_f1", -math.inf)),
            best_epoch=int(payload.get("best_epoch", 0)),
            best_objects=float(payload.get("best_objects", math.nan)),
            max_f1=float(payload.get("max_f1", payload.get("best_f1", -math.inf))),
            min_loss=float(payload.get("min_loss", payload["best_loss"])),
            since_best=int(payload["since_best"]),
            history=[dict(row) for row in payload["history"]],
            attempt=int(payload.get("attempt", 0)),
            healthy=bool(payload.get("healthy", False)),
            restarts=[
                Restart(
                    attempt=int(r["attempt"]),
                    seed=int(r["seed"]),
                    epoch=int(r["epoch"]),
                    problems=tuple(str(p) for p in r["problems"]),
                )
                for r in payload.get("restarts", [])
            ],
        )
        _set_rng_state(self.rng, payload["numpy_rng"])
        torch.set_rng_state(payload["torch_rng"])

    def _improved(self, row: Mapping[str, float], segmented: bool) -> tuple[bool, bool]:
        """Whether the epoch replaces the kept one, and whether it counts as progress for early
        stopping (a validation F1 above any before, or a loss 1% below the lowest); see the
        module docstring."""
        state = self.state
        f1_gain = False
        loss = row["train_loss"] if math.isnan(row["val_loss"]) else row["val_loss"]
        new_low = loss < state.min_loss * (1.0 - LOSS_MIN_DELTA)
        state.min_loss = min(state.min_loss, loss)
        if not self.use_f1:
            better = loss < state.best_loss
        elif not segmented:
            better = False
        else:
            f1 = row["val_f1"]
            f1_gain = f1 > state.max_f1
            state.max_f1 = max(state.max_f1, f1)
            floor = state.max_f1 - self.f1_tolerance()
            kept_in_band = state.best_f1 >= floor
            better = f1 >= floor and (not kept_in_band or loss < state.best_loss)
            if better:
                state.best_f1, state.best_objects = f1, row["val_objects"]
        if better:
            state.best_loss = loss
        return better, f1_gain or new_low

    def f1_tolerance(self) -> float:
        """How far below the best F1 an epoch still ties with it: the standard error of
        an F1 measured on n objects, sqrt(F1 (1 - F1) / n), and at least ``F1_TIE_ERRORS``
        objects' errors (about 2 / 2n of F1 = 2TP / (2TP + FP + FN)). With 24 validation
        objects at F1 0.8 that is 0.08: the epochs of a plateau all tie and the loss decides;
        a collapse (no seeds, F1 near 0) never ties with a working epoch."""
        n = max(self.val_true_objects, 1.0)  # set by the validation before each judgement
        best = min(max(self.state.max_f1, 0.0), 1.0)
        return max(F1_TIE_ERRORS / (2.0 * n), math.sqrt(best * (1.0 - best) / n))

    def _health(self, row: dict[str, float]) -> list[str]:
        """The health check's problems (empty: healthy); marks the row.

        Each figure is the best the attempt reached in any epoch so far: a learning network's
        figures swing from epoch to epoch at higher learning rates, and what must not happen is
        that they never get there.
        """
        rows = [r for r in self.state.history if r.get("attempt", 0) == self.state.attempt]
        rows.append(row)

        def best(key: str) -> float:
            values = [r[key] for r in rows if not math.isnan(r.get(key, math.nan))]
            return max(values) if values else math.nan

        figures = {
            "training": HeadFigures(best("train_distance_p99_nm"), best("train_probability_gap"))
        }
        if self.val_boxes:
            figures["validation"] = HeadFigures(
                best("val_distance_p99_nm"), best("val_probability_gap")
            )
        radius = self.segment_params.object_radius_nm or math.nan
        problems = health_problems(figures, self.segment_params.seed_threshold_nm, radius)
        row["healthy"] = 0.0 if problems else 1.0
        return problems

    def _still_learning(self, row: Mapping[str, float], epoch: int) -> bool:
        """Whether a failing attempt may have another epoch: its training figures set a clear new
        best this epoch (slow learning, e.g. a low lr, rather than a stuck network), and the
        check has been postponed for fewer than ``health_epochs`` epochs (never past the last).
        """
        if epoch >= min(self.config.max_epochs, 2 * self.health_epoch):
            return False
        before = [r for r in self.state.history if r.get("attempt", 0) == self.state.attempt]

        def gain(key: str) -> float:
            previous = [r[key] for r in before if not math.isnan(r.get(key, math.nan))]
            if not previous or math.isnan(row[key]):
                return 0.0
            return row[key] - max(previous)

        threshold = self.segment_params.seed_threshold_nm
        return (
            gain("train_distance_p99_nm") >= PROGRESS_DISTANCE_FRACTION * threshold
            or gain("train_probability_gap") >= PROGRESS_GAP
        )

    def _restart(self, problems: Sequence[str]) -> None:
        """Record the failed attempt and start the next from a new seed (or give up)."""
        state = self.state
        state.restarts.append(
            Restart(
                state.attempt,
                attempt_seed(self.config.seed, state.attempt),
                state.epoch,
                tuple(problems),
            )
        )
        if state.attempt >= self.config.max_restarts:
            raise TrainingFailedError(failure_message(state.restarts, self.voxel_size))
        attempt = state.attempt + 1
        self.state = _State(history=state.history, attempt=attempt, restarts=state.restarts)
        self._start_attempt(attempt_seed(self.config.seed, attempt))

    def run(self, progress: ProgressCallback, metrics: EpochCallback | None = None) -> None:
        """Train epochs until ``max_epochs`` or early stopping; save after each epoch."""
        config = self.config
        best_path, last_path = self.out_dir / "best.pt", self.out_dir / "last.pt"
        csv_path, png_path = self.out_dir / "history.csv", self.out_dir / "history.png"
        total = config.max_epochs * config.iterations_per_epoch
        self.model.train()
        while self.state.epoch < config.max_epochs and self.state.since_best < config.patience:
            started = time.perf_counter()
            self.epoch_figures = FigureMedian()
            losses = []
            for i in range(config.iterations_per_epoch):
                step = self.state.epoch * config.iterations_per_epoch + i
                measure = i >= config.iterations_per_epoch - FIGURE_STEPS
                losses.append(self._train_step(step, measure))
                if i + 1 < config.iterations_per_epoch:  # the last: once validated and saved
                    progress(TRAINING_STEPS, step + 1, total)
            self.state.epoch += 1
            epoch = self.state.epoch
            check = 0 < self.health_epoch <= epoch and not self.state.healthy
            segment = check or (config.val_interval > 0 and epoch % config.val_interval == 0)
            train_figures = self.epoch_figures.result()
            row: dict[str, float] = {
                "epoch": epoch,
                "attempt": self.state.attempt,
                "train_loss": float(np.mean(losses)),
                **self.validate(segment),
                "train_distance_p99_nm": train_figures.distance_p99_nm,
                "train_probability_gap": train_figures.probability_gap,
                "healthy": math.nan,
            }
            problems = self._health(row) if check else []
            if problems and self._still_learning(row, epoch):
                row["healthy"], problems = math.nan, []  # judged again next epoch
            elif check and not problems:
                self.state.healthy = True
            row["seconds"] = time.perf_counter() - started
            self.state.history.append(row)
            if metrics is not None:
                metrics(dict(row))
            if problems:
                _write_history(self.state.history, csv_path, png_path)
                self._restart(problems)  # raises when no restart is left
                progress(TRAINING_STEPS, 0, total)  # counting starts over (the site sees it)
                best_path.unlink(missing_ok=True)
                self.model.train()
                continue
            kept, progressed = self._improved(row, segment)
            if kept:
                self.state.best_epoch = epoch
                self.save_best(best_path)
            self.state.since_best = 0 if progressed else self.state.since_best + 1
            self.save_checkpoint(last_path)
            _write_history(self.state.history, csv_path, png_path)
            # The epoch's last step counts only now: its validation is part of the steps' pace
            # (the last epoch's would otherwise stand at "150 / 150" with no time left shown).
            progress(TRAINING_STEPS, epoch * config.iterations_per_epoch, total)
        if not best_path.exists():  # no epoch was judged (validations rarer than the epochs)
            self.state.best_epoch = self.state.epoch
            self.save_best(best_path)
        progress(TRAINING_STEPS, total, total)


def train(
    boxes: list[TrainingBox],
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: ProgressCallback = no_progress,
    metrics: EpochCallback | None = None,
) -> TrainResult:
    """Train a U-Net on ``boxes``; files go to ``out_dir`` (see the module docstring).

    ``metrics`` receives each epoch's history row as it is written. Raises
    :class:`~pipeline.errors.TrainingFailedError` when every attempt fails its health check.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(boxes, config, out_dir)
    last = out_dir / "last.pt"
    if resume and last.is_file():
        trainer.load_checkpoint(last)
    elif not resume and last.exists():
        raise InvalidInputError(f"{out_dir} already holds a training run: resume it or use another")
    trainer.run(progress, metrics)
    state = trainer.state
    return TrainResult(
        best_checkpoint=out_dir / "best.pt",
        last_checkpoint=last,
        history_csv=out_dir / "history.csv",
        history_png=out_dir / "history.png",
        best_val_loss=state.best_loss,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_val_f1=state.best_f1 if math.isfinite(state.best_f1) else math.nan,
        val_objects=state.best_objects,
        attempts=state.attempt + 1,
        restarts=tuple(state.restarts),
        seed_threshold_nm=trainer.segment_params.seed_threshold_nm,
        history=tuple(state.history),
        f1_tolerance=trainer.f1_tolerance() if trainer.use_f1 else math.nan,
    )
