"""Pipeline run configuration: a YAML or TOML file loaded into typed, strictly validated sections.

Every section is a frozen dataclass; a key the dataclass does not know, a value of the wrong
type or a path that does not exist raises :class:`InvalidInputError` naming the key
(``segment.block``) and the file. Relative paths are resolved against the config file's folder.
The ``model`` section holds the :class:`pipeline.unet.UNetConfig` fields plus an optional
``path`` of a trained model (then training is skipped); ``training`` holds the
:class:`pipeline.training.TrainConfig` fields except ``unet`` and ``voxel_size``, which come from
``model`` and ``data``. Both are checked against those dataclasses when the file is loaded.
A sequence field (``block``, ``patch_shape``) also accepts a single number, meaning every axis.
Loading also opens the inputs' metadata (no voxel is read) and reads every box table
(:mod:`pipeline.box_table`) against its image's shape and voxel size, and checks each training
image (``data.images`` or ``data.image/labels/boxes``): labels and semantic masks of its shape,
its dimensions the model's, a voxel size known; so a bad table or input fails here, before any
work, naming the key, the file, the line and the column.
See ``examples/pipeline.yaml`` for a documented example.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pipeline.errors import InvalidInputError

T = TypeVar("T")
STEPS: tuple[str, ...] = ("train", "predict", "segment", "measure", "filter", "evaluate")
# TrainConfig fields the pipeline fills in itself.
DERIVED_TRAINING_KEYS = frozenset({"unet", "voxel_size"})


@dataclass(frozen=True)
class TrainingImage:
    """One image of a training set, with its instance labels and the boxes where they are
    complete; any format :func:`pipeline.volumes.open_volume` reads (OME-Zarr, TIFF, ``.npy``,
    ``file.h5:/dataset``). ``semantic`` names a mask image (non-zero = class) per extra logits
    head of the model."""

    image: Path
    labels: Path
    boxes: Path  # box table (pipeline.box_table)
    voxel_size: tuple[float, ...] | None = None  # nm, z y x; default from the image metadata
    level: int = 0
    semantic: Mapping[str, Path] | None = None


@dataclass(frozen=True)
class DataConfig:
    """The image to segment and, optionally, ground truth in boxes (for training/evaluation).

    The training set is ``images`` when given (a list of :class:`TrainingImage`), else the image
    itself with ``labels``, ``boxes`` (and ``semantic``).
    """

    image: Path  # any format open_volume reads (OME-Zarr NGFF 0.4/0.5, TIFF, .npy, HDF5), 2D/3D
    labels: Path | None = None  # ground-truth instance labels, same shape as the image
    boxes: Path | None = None  # box table (pipeline.box_table): origin+size or corners
    voxel_size: tuple[float, ...] | None = None  # nm, z y x; default from the image metadata
    level: int = 0
    semantic: Mapping[str, Path] | None = None  # mask image per extra logits head
    images: tuple[TrainingImage, ...] = ()  # a training set of several images


@dataclass(frozen=True)
class ModelConfig:
    """The U-Net: a trained model file, or the architecture (``unet``) to train."""

    path: Path | None = None
    unet: Any = None  # pipeline.unet.UNetConfig, built from the section's other keys
    # auto: pooling and kernels from the voxel size unless unet.pool/kernel are given
    # (pipeline.anisotropy); off: the isotropic published network whatever the voxel size
    anisotropy: Literal["auto", "off"] = "auto"
    # The U-Net keys a config file gives (the rest are chosen for the data); None, as when the
    # section is built in code, keeps the whole ``unet`` as it is.
    unet_keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PredictConfig:
    block: tuple[int, ...] | None = None  # output block (a valid U-Net output); default ~128^3
    mask: Path | None = None  # OME-Zarr tissue mask (non-zero = predict)
    workers: int = 1  # processes
    batch_size: int = 1  # blocks per forward pass
    compile: bool = False  # torch.compile + weight freezing (no faster on the 2-core bench CPU)
    num_threads: int | None = None  # torch threads per process (default: all cores)
    device: str = "auto"
    flips: bool | None = None  # test-time flips along y and x (4x the work); default: 2D only


@dataclass(frozen=True)
class SegmentConfig:
    """Seeded watershed settings: a preset, optionally with single values overridden.

    ``preset: auto`` uses the settings fitted after training and recorded in the model file,
    else derives them from the ground truth's object size (``evaluate``/``data`` labels and
    boxes), else falls back to ``xray-nuclei`` (the published 705.6 nm seeds, no smoothing, no
    minimum seed) with a note; a preset name selects it. ``seed_threshold``, ``seed_dynamic_nm``,
    ``smooth_nm`` and ``min_seed_voxels`` override the preset's value when given.
    """

    preset: str = "auto"  # auto, or a named preset (pipeline.segment_params.PRESETS)
    seed_threshold: float | None = None  # nm: seeds where the distance exceeds this
    min_seed_voxels: int | None = None  # drop smaller seeds (noise maxima); 0 keeps all
    seed_dynamic_nm: float | None = None  # nm: a seed's peak rises this far above its saddle
    smooth_nm: float | None = None  # Gaussian sigma (nm) on the distance before seeding; 0: off
    iou_threshold: float = 0.75  # merge block segments whose face IoU reaches this
    block: tuple[int, ...] = (128,)
    halo: tuple[int, ...] | None = None  # default: (2 x seed threshold + 4 x smooth_nm) / voxel
    workers: int = 1


@dataclass(frozen=True)
class MeshConfig:
    simplify_ratio: float = 0.05  # fraction of marching-cubes faces kept for display


@dataclass(frozen=True)
class FilterConfig:
    """Volume (um^3) / sphericity filter: fixed thresholds, or fitted on labelled detections.

    ``method``: ``none`` keeps everything; ``fixed`` uses ``t_volume``/``t_sphericity``;
    ``tables`` fits on the TP/FP tables ``tp``/``fp``; ``ground_truth`` labels the run's own
    detections inside the ground-truth boxes as TP (matched) or FP and fits on them.
    """

    method: Literal["none", "fixed", "tables", "ground_truth"] = "none"
    t_volume: float | None = None
    t_sphericity: float | None = None
    tp: Path | None = None
    fp: Path | None = None
    folds: int = 5
    min_recall: float = 0.8


@dataclass(frozen=True)
class EvaluateConfig:
    labels: Path | None = None  # default: data.labels
    boxes: Path | None = None  # default: data.boxes
    margin_um: float = 8.0
    iou_threshold: float = 0.5


@dataclass(frozen=True)
class PipelineConfig:
    """A whole run's configuration."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    training: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig keyword arguments
    predict: PredictConfig = field(default_factory=PredictConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    out: Path | None = None  # default output directory
    # A step that produces nothing (no seed, zero objects) is expected: `run` exits 0, not 3.
    allow_empty: bool = False
    source: Path | None = None  # the file this was loaded from

    @property
    def gt_labels(self) -> Path | None:
        return self.evaluate.labels or self.data.labels

    @property
    def gt_boxes(self) -> Path | None:
        return self.evaluate.boxes or self.data.boxes

    def training_images(self) -> list[TrainingImage]:
        """The training set: ``data.images``, or the image with its labels and boxes."""
        data = self.data
        if data.images:
            return list(data.images)
        if data.labels is None or data.boxes is None:
            return []
        return [
            TrainingImage(
                data.image, data.labels, data.boxes, data.voxel_size, data.level, data.semantic
            )
        ]

    def train_config(
        self, voxel_size: tuple[float, ...], boxes: Sequence[Any] | None = None
    ) -> Any:
        """The :class:`pipeline.training.TrainConfig` for this run (U-Net pooling and default
        patch chosen for the voxel size unless ``model.anisotropy`` is off or they are given).

        With the training ``boxes``, what the file leaves out is chosen from the objects' size,
        the boxes and the device (:func:`pipeline.training_auto.choose_train_config`), as runs
        and ``train`` do; without, the dataclass defaults fill it.
        """
        from pipeline.anisotropy import unet_and_patch_for_voxel_size
        from pipeline.training import TrainConfig

        init = self.training.get("init_model")
        if init is not None:  # fine-tuning: the parent's network, whole
            from pipeline.model_io import model_unet_config

            parent = model_unet_config(init)
            if boxes is not None:
                from pipeline.training_auto import choose_train_config

                return choose_train_config(
                    parent, None, self.training, voxel_size=voxel_size, boxes=boxes
                )
            return TrainConfig(unet=parent, voxel_size=voxel_size, **self.training)
        if boxes is not None:
            from pipeline.training_auto import choose_train_config

            return choose_train_config(
                self.model.unet,
                self.model.unet_keys,
                self.training,
                voxel_size=voxel_size,
                boxes=boxes,
                anisotropy=self.model.anisotropy,
            )

        unet, training = unet_and_patch_for_voxel_size(
            self.model.unet, self.training, voxel_size,
            TrainConfig(unet=self.model.unet).patch_shape, self.model.anisotropy,
        )  # fmt: skip
        return TrainConfig(unet=unet, voxel_size=voxel_size, **training)

    def parameters(self) -> dict[str, Any]:
        """The whole configuration as plain JSON-able data (for the manifest)."""
        plain: dict[str, Any] = to_plain(self)
        return plain


def to_plain(value: Any) -> Any:
    """Dataclasses, paths, tuples and mappings as JSON-able dicts, strings and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


class _Where:
    """Names the key being validated in error messages."""

    def __init__(self, source: str, key: str = "") -> None:
        self.source = source
        self.key = key

    def child(self, key: str | int) -> _Where:
        name = f"{self.key}[{key}]" if isinstance(key, int) else f"{self.key}.{key}".lstrip(".")
        return _Where(self.source, name)

    def error(self, message: str) -> InvalidInputError:
        return InvalidInputError(f"{self.source}: {self.key or 'top level'}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: _Where, base: Path) -> Any:
    """``value`` checked against the type hint ``tp`` (and converted: lists to tuples, paths)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(value, option, where, base)
            except InvalidInputError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise InvalidInputError(errors[0])
        raise where.error(f"{value!r} is none of {', '.join(map(_type_name, options))}")
    if origin is Literal:
        if value not in args:
            raise where.error(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        if variadic and not isinstance(value, list | tuple):
            value = [value]  # one number for every axis
        if not isinstance(value, list | tuple):
            raise where.error(f"expected a list, got {value!r}")
        if not variadic and len(value) != len(args):
            raise where.error(f"expected {len(args)} values, got {len(value)}")
        item_types = [args[0]] * len(value) if variadic else list(args)
        if variadic and not value:
            raise where.error("expected at least one value")
        return tuple(
            _convert(v, t, where.child(i), base)
            for i, (v, t) in enumerate(zip(value, item_types, strict=True))
        )
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise where.error(f"expected a table of keys, got {value!r}")

        if len(args) == 2 and args[1] is not Any:
            return {
                str(k): _convert(v, args[1], where.child(str(k)), base) for k, v in value.items()
            }
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build_dataclass(tp, value, where, base)
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise where.error(f"expected a path, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path)
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise where.error(f"expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise where.error(f"expected {_type_name(tp)}, got {value!r}")


def build_dataclass(
    cls: type[T],
    values: Any,
    where: _Where,
    base: Path,
    *,
    exclude: frozenset[str] = frozenset(),
) -> T:
    """An instance of the dataclass ``cls`` from a mapping, strictly checked key by key."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise where.error(f"expected a table of keys, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, values)) - set(fields))
    if unknown:
        raise where.error(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], where.child(name), base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.child(name).error("required key is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, InvalidInputError) as exc:
        raise where.error(str(exc)) from exc


def _check_paths_exist(value: Any, where: _Where) -> None:
    """Every path in the (input) sections must exist."""
    from pipeline.volumes import volume_path_exists

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _check_paths_exist(getattr(value, f.name), where.child(f.name))
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            if dataclasses.is_dataclass(item) or isinstance(item, Path):
                _check_paths_exist(item, where.child(i))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_paths_exist(item, where.child(str(key)))
    elif isinstance(value, Path) and not volume_path_exists(value):
        raise where.error(f"{value} does not exist")


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInputError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise InvalidInputError(f"{path.name}: config files end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"{path.name}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path.name}: expected sections (data, model, ...) at top level")
    return data


def _model_section(values: Any, where: _Where, base: Path) -> ModelConfig:
    from pipeline.unet import UNetConfig

    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise where.error(f"expected a table of keys, got {values!r}")
    rest = {k: v for k, v in values.items() if k not in ("path", "anisotropy")}
    path = _convert(values["path"], Path, where.child("path"), base) if "path" in values else None
    anisotropy = _convert(
        values.get("anisotropy", "auto"), Literal["auto", "off"], where.child("anisotropy"), base
    )
    unet = build_dataclass(UNetConfig, rest, where, base)
    return ModelConfig(path=path, unet=unet, anisotropy=anisotropy, unet_keys=tuple(sorted(rest)))


def _training_section(values: Any, where: _Where, base: Path) -> dict[str, Any]:
    """TrainConfig keyword arguments, type-checked against TrainConfig's fields."""
    from pipeline.training import TrainConfig

    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise where.error(f"expected a table of keys, got {values!r}")
    derived = sorted(DERIVED_TRAINING_KEYS & set(values))
    if derived:
        raise where.error(f"{', '.join(derived)} come from the model and data sections")
    fields = {
        f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in DERIVED_TRAINING_KEYS
    }
    unknown = sorted(set(map(str, values)) - set(fields))
    if unknown:
        raise where.error(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(TrainConfig)
    return {k: _convert(v, hints[k], where.child(k), base) for k, v in values.items()}


def _check_filter(config: FilterConfig, where: _Where) -> None:
    fixed = config.t_volume is not None or config.t_sphericity is not None
    tables = config.tp is not None or config.fp is not None
    if config.method == "fixed" and (config.t_volume is None or config.t_sphericity is None):
        raise where.error("method 'fixed' needs both t_volume and t_sphericity")
    if config.method == "tables" and (config.tp is None or config.fp is None):
        raise where.error("method 'tables' needs both tp and fp tables")
    if fixed and config.method != "fixed":
        raise where.error("t_volume/t_sphericity are only used with method 'fixed'")
    if tables and config.method != "tables":
        raise where.error("tp/fp are only used with method 'tables'")
    if config.folds < 1 or not 0 <= config.min_recall <= 1:
        raise where.error("folds must be >= 1 and min_recall in [0, 1]")


def _check_segment(config: SegmentConfig, where: _Where) -> None:
    from pipeline.segment_params import AUTO, PRESETS

    if config.preset != AUTO and config.preset not in PRESETS:
        raise where.child("preset").error(
            f"unknown preset {config.preset!r}; known: {', '.join([AUTO, *sorted(PRESETS)])}"
        )
    for name in ("seed_threshold", "min_seed_voxels", "smooth_nm", "seed_dynamic_nm"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise where.child(name).error("must not be negative")


def _check_fine_tune(config: PipelineConfig, top: _Where) -> None:
    """``training.init_model`` (fine-tuning) trains the parent's network: it must exist, and
    neither a trained model (nothing would train) nor U-Net keys (another network) go with it."""
    init = config.training.get("init_model")
    if init is None:
        return
    where = top.child("training.init_model")
    if not Path(init).is_file():
        raise where.error(f"no model file at {init}")
    if config.model.path is not None:
        raise where.error("model.path skips training: give one or the other")
    if config.model.unet_keys:
        keys = ", ".join(f"model.{k}" for k in config.model.unet_keys)
        raise where.error(f"a fine-tune keeps its parent's U-Net: leave out {keys}")


def parse_config(data: Mapping[str, Any], *, base: Path, source: str = "config") -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig` from already-parsed data."""
    top = _Where(source)
    known = {f.name for f in dataclasses.fields(PipelineConfig)} - {"source"}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise top.error(f"unknown section(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
    if "data" not in data:
        raise top.child("data").error("required section is missing")
    sections: dict[str, Any] = {}
    for f in dataclasses.fields(PipelineConfig):
        name = f.name
        if name not in data or name == "source":
            continue
        where = top.child(name)
        if name == "model":
            sections[name] = _model_section(data[name], where, base)
        elif name == "training":
            sections[name] = _training_section(data[name], where, base)
        elif name == "out":
            sections[name] = _convert(data[name], Path, where, base)
        elif name == "allow_empty":
            sections[name] = _convert(data[name], bool, where, base)
        else:
            hint = typing.get_type_hints(PipelineConfig)[name]
            sections[name] = build_dataclass(hint, data[name], where, base)
    if "model" not in sections:
        sections["model"] = _model_section({}, top.child("model"), base)
    if "training" not in sections:
        sections["training"] = {}
    config = PipelineConfig(**sections)
    for name in ("data", "model", "predict", "filter", "evaluate"):
        _check_paths_exist(getattr(config, name), top.child(name))
    _check_filter(config.filter, top.child("filter"))
    if config.data.level < 0:
        raise top.child("data.level").error("must be >= 0")
    for name, values in (
        ("predict.block", config.predict.block or (1,)),
        ("segment.block", config.segment.block),
        ("segment.halo", config.segment.halo or (1,)),
        ("data.voxel_size", config.data.voxel_size or (1.0,)),
    ):
        if min(values) <= 0:
            raise top.child(name).error("values must be positive")
    if min(config.predict.workers, config.predict.batch_size, config.segment.workers) < 1:
        raise top.error("workers and batch_size must be >= 1")
    _check_segment(config.segment, top.child("segment"))
    _check_fine_tune(config, top)
    if not 0 < config.mesh.simplify_ratio <= 1:
        raise top.child("mesh.simplify_ratio").error("must be in (0, 1]")
    config = _dims_from_image(config, top)
    _check_box_tables(config, top)
    return config


def _dims_from_image(config: PipelineConfig, top: _Where) -> PipelineConfig:
    """A model section without ``dims`` trains a network of the image's dimensions (a 2D image
    needs no ``model: {dims: 2}``). An image that cannot be read is left to the later checks."""
    keys = config.model.unet_keys
    if config.model.path is not None or keys is None or "dims" in keys:
        return config
    images = config.training_images()
    path, level, voxel = (
        (images[0].image, images[0].level, images[0].voxel_size)
        if images
        else (config.data.image, config.data.level, config.data.voxel_size)
    )
    unet = config.model.unet
    try:
        shape, _ = _volume_geometry(
            top.child("data.image"), path, level, voxel, "image", unet.in_channels
        )
    except InvalidInputError:
        return config
    if len(shape) == unet.dims or len(shape) not in (2, 3):
        return config
    model = dataclasses.replace(config.model, unet=dataclasses.replace(unet, dims=len(shape)))
    return dataclasses.replace(config, model=model)


def _read_box_table(
    where: _Where, boxes: Path, shape: tuple[int, ...], voxel_size: tuple[float, ...] | None
) -> None:
    from pipeline.box_table import box_table_read

    try:
        box_table_read(boxes, shape=shape, voxel_size=voxel_size)
    except InvalidInputError as exc:
        raise where.error(str(exc)) from None


def _volume_geometry(
    where: _Where,
    path: Path,
    level: int,
    voxel_size: tuple[float, ...] | None,
    what: str,
    channels: int = 1,
) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Spatial shape and voxel size of an input volume (metadata only: no voxel is read)."""
    from pipeline.volumes import open_volume

    try:
        volume = open_volume(path, level, voxel_size, what, channels=channels)
    except InvalidInputError as exc:
        raise where.error(str(exc)) from None
    shape = tuple(int(n) for n in volume.array.shape)
    return shape[1:] if channels > 1 else shape, volume.voxel_size


def _network(config: PipelineConfig) -> Any:  # pipeline.unet.UNetConfig (imports torch)
    """The network the image is read for: a named model file's (the model that segments, or a
    fine-tune's parent: each keeps its own channels and dimensions), else the model section's."""
    named = config.model.path or config.training.get("init_model")
    if named is not None and Path(named).is_file():
        from pipeline.model_io import model_unet_config  # torch: only when a file is named

        try:  # an unreadable file says so here, not as a wrong channel count
            return model_unet_config(Path(named))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{Path(named).name}: no readable U-Net ({exc})") from None
    return config.model.unet


def _check_box_tables(config: PipelineConfig, top: _Where) -> None:
    """Every box table read and checked against its image now, before any work is done; each
    training image's labels and masks checked to match it, and its dimensions the model's."""
    data = config.data
    unet = _network(config)
    train = config.model.path is None
    channels = unet.in_channels  # the image has this many channels, first, when > 1
    if data.boxes is not None or config.evaluate.boxes is not None:
        shape, voxel = _volume_geometry(
            top.child("data.image"), data.image, data.level, data.voxel_size, "image", channels
        )
        for key, table in (("data.boxes", data.boxes), ("evaluate.boxes", config.evaluate.boxes)):
            if table is not None:
                _read_box_table(top.child(key), table, shape, voxel)
    if not train:
        return
    prefix = "data.images" if data.images else "data"
    for i, entry in enumerate(config.training_images()):
        where = top.child(prefix).child(i) if data.images else top.child(prefix)
        shape, voxel = _volume_geometry(
            where.child("image"), entry.image, entry.level, entry.voxel_size, "image", channels
        )
        if len(shape) != unet.dims:
            raise where.child("image").error(
                f"{entry.image.name} is {len(shape)}D but model.dims is {unet.dims}"
            )
        if voxel is None:
            raise where.child("voxel_size").error(
                f"{entry.image.name} records no voxel size: give voxel_size (nm)"
            )
        others = [("labels", entry.labels)]
        others += [(f"semantic.{k}", v) for k, v in (entry.semantic or {}).items()]
        for key, path in others:
            other, _ = _volume_geometry(where.child(key), path, entry.level, voxel, key)
            if other != shape:
                raise where.child(key).error(
                    f"{path.name} has shape {other}, the image {entry.image.name} {shape}"
                )
        if entry.boxes != data.boxes or data.images:
            _read_box_table(where.child("boxes"), entry.boxes, shape, voxel)
        heads = {h.name for h in unet.heads if h.kind == "logits"} - {"probability"}
        missing = sorted(heads - set(entry.semantic or {}))
        if missing:
            raise where.child("semantic").error(
                f"no mask for the model's head(s) {', '.join(missing)}"
            )


def load_config(path: str | Path) -> PipelineConfig:
    """Load a YAML (``.yaml``/``.yml``) or TOML (``.toml``) pipeline config file."""
    path = Path(path).resolve()
    config = parse_config(_read_mapping(path), base=path.parent, source=str(path))
    return dataclasses.replace(config, source=path)


def with_overrides(config: PipelineConfig, **sections: Any) -> PipelineConfig:
    """A copy with some sections replaced (``dataclasses.replace`` at the top level)."""
    return dataclasses.replace(config, **sections)
