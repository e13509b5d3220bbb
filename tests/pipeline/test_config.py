"""Pipeline config files: YAML and TOML, strict validation with errors naming the key."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import InvalidInputError
from pipeline.importers import convert_to_ome_zarr
from pipeline.unet import HeadConfig

REPO = Path(__file__).resolve().parents[2]

YAML = """
data:
  image: image.ome.zarr
  labels: image.ome.zarr/labels/nuclei
  boxes: boxes.csv
  voxel_size: [200, 100, 100]
model:
  width: 4
  depth: 1
  heads:
    - {name: probability, kind: logits}
    - {name: distance, kind: linear}
training:
  patch_shape: 44
  batch_size: 2
  lr: 0.001
  augment: false
predict:
  block: [64, 128, 128]
segment:
  seed_threshold: 500
  block: 64
filter:
  method: fixed
  t_volume: 10
  t_sphericity: 0.5
evaluate:
  margin_um: 2
"""

TOML = """
[data]
image = "image.ome.zarr"
labels = "image.ome.zarr/labels/nuclei"
boxes = "boxes.csv"
voxel_size = [200, 100, 100]

[model]
width = 4
depth = 1
heads = [{name = "probability", kind = "logits"}, {name = "distance", kind = "linear"}]

[training]
patch_shape = 44
batch_size = 2
lr = 0.001
augment = false

[predict]
block = [64, 128, 128]

[segment]
seed_threshold = 500
block = 64

[filter]
method = "fixed"
t_volume = 10
t_sphericity = 0.5

[evaluate]
margin_um = 2
"""


def make_store(folder: Path, shape: tuple[int, ...] = (8, 16, 16)) -> None:
    """A tiny OME-Zarr image with a ``nuclei`` label image: box tables are checked against it."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "raw.npy", np.zeros(shape, np.uint8))
    np.save(folder / "raw_labels.npy", np.zeros(shape, np.uint16))
    convert_to_ome_zarr(
        folder / "raw.npy",
        folder,
        voxel_size=(200.0, 100.0, 100.0),
        unit="nm",
        labels={"nuclei": folder / "raw_labels.npy"},
    )


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The files the example configs name."""
    make_store(tmp_path)
    (tmp_path / "boxes.csv").write_text("x,y,z,w,h,d\n0,0,0,8,8,8\n")
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def check_example(config: PipelineConfig, folder: Path) -> None:
    assert config.data.image == folder / "image.ome.zarr"
    assert config.data.labels == folder / "image.ome.zarr" / "labels" / "nuclei"
    assert config.data.voxel_size == (200.0, 100.0, 100.0)
    assert config.model.path is None
    assert config.model.unet.width == 4 and config.model.unet.depth == 1
    assert config.model.unet.heads == (
        HeadConfig("probability", "logits"),
        HeadConfig("distance", "linear"),
    )
    assert config.training == {"patch_shape": (44,), "batch_size": 2, "lr": 0.001, "augment": False}
    assert config.predict.block == (64, 128, 128)
    assert config.segment.block == (64,)
    assert config.segment.seed_threshold == 500.0
    assert config.segment.iou_threshold == 0.75  # default
    assert config.filter.method == "fixed" and config.filter.t_volume == 10.0
    assert config.evaluate.margin_um == 2.0
    assert config.gt_labels == config.data.labels and config.gt_boxes == config.data.boxes


def test_yaml_and_toml_load_the_same_config(inputs: Path) -> None:
    from_yaml = load_config(write(inputs, "run.yaml", YAML))
    from_toml = load_config(write(inputs, "run.toml", TOML))
    check_example(from_yaml, inputs)
    check_example(from_toml, inputs)
    a, b = from_yaml.parameters(), from_toml.parameters()
    assert a.pop("source").endswith("run.yaml") and b.pop("source").endswith("run.toml")
    assert a == b
    assert from_yaml.source == inputs / "run.yaml"


def test_train_config_is_built_from_model_training_and_voxel_size(inputs: Path) -> None:
    config = load_config(write(inputs, "run.yaml", YAML))
    train_config = config.train_config((200.0, 100.0, 100.0))
    # z:xy 2: the U-Net's first level neither pools nor convolves along z (pipeline.anisotropy).
    assert train_config.unet == dataclasses.replace(
        config.model.unet, pool=((1, 2, 2),), kernel=((1, 3, 3), (3, 3, 3))
    )
    assert train_config.patch_shape == (44, 44, 44)  # given, so kept
    assert train_config.voxel_size == (200.0, 100.0, 100.0)
    assert train_config.batch_size == 2 and train_config.augment is False
    assert config.train_config((100.0, 100.0, 100.0)).unet == config.model.unet


def test_anisotropy_auto_off_or_explicit_pooling(inputs: Path) -> None:
    voxel = (400.0, 100.0, 100.0)
    data = yaml.safe_load(YAML)
    del data["training"]["patch_shape"]
    auto = load_config(write(inputs, "auto.yaml", yaml.safe_dump(data))).train_config(voxel)
    assert auto.unet.pool == ((1, 2, 2),) and auto.unet.kernel == ((1, 3, 3), (3, 3, 3))
    assert auto.patch_shape == (29, 116, 112)  # the default's length in nm along z too
    data["model"]["anisotropy"] = "off"
    off = load_config(write(inputs, "off.yaml", yaml.safe_dump(data))).train_config(voxel)
    assert off.unet.is_isotropic and off.unet.pool is None and off.patch_shape == (116, 116, 112)
    data["model"] |= {"anisotropy": "auto", "pool": [[2, 2, 2]]}
    given = load_config(write(inputs, "given.yaml", yaml.safe_dump(data))).train_config(voxel)
    assert given.unet.pool == ((2, 2, 2),) and given.patch_shape == (116, 116, 112)
    data["model"] |= {"anisotropy": "sometimes"}
    with pytest.raises(InvalidInputError, match=r"model\.anisotropy"):
        load_config(write(inputs, "bad.yaml", yaml.safe_dump(data)))
    data["model"] |= {"anisotropy": "auto", "pool": [[2, 2]]}
    with pytest.raises(InvalidInputError, match=r"model.*pool"):
        load_config(write(inputs, "bad.yaml", yaml.safe_dump(data)))


def test_a_fine_tune_trains_its_parents_network_whatever_the_voxel_size(inputs: Path) -> None:
    from pipeline.model_io import save_model
    from pipeline.unet import UNet, UNetConfig

    parent_unet = UNetConfig(width=2, depth=1)  # isotropic, though the data is not
    save_model(
        inputs / "parent.pt", UNet(parent_unet), mean=0.0, std=1.0, voxel_size=(100.0,) * 3,
        metadata={},
    )  # fmt: skip
    data = yaml.safe_load(YAML)
    model_keys = data.pop("model")
    data["training"]["init_model"] = "parent.pt"
    config = load_config(write(inputs, "tune.yaml", yaml.safe_dump(data)))
    assert config.training["init_model"] == inputs / "parent.pt"
    tuned = config.train_config((400.0, 100.0, 100.0))
    assert tuned.unet == parent_unet and tuned.init_model == inputs / "parent.pt"
    assert tuned.patch_shape == (44, 44, 44) and tuned.lr == 0.001
    for change, message in (
        ({"model": model_keys}, "keeps its parent's U-Net: leave out model.depth"),
        ({"model": {"path": "parent.pt"}}, "model.path skips training"),
        ({"training": {**data["training"], "init_model": "nope.pt"}}, "no model file at"),
    ):
        bad = write(inputs, "bad.yaml", yaml.safe_dump({**data, **change}))
        with pytest.raises(InvalidInputError, match=message):
            load_config(bad)


def test_normalisation_and_augmentation_settings(inputs: Path) -> None:
    data = yaml.safe_load(YAML)
    data["training"]["normalisation"] = {"method": "meanstd"}
    data["training"]["augmentation"] = {"gamma": [0.5, 2], "blur_probability": 0}
    config = load_config(write(inputs, "run.yaml", yaml.safe_dump(data)))
    train_config = config.train_config((200.0, 100.0, 100.0))
    assert train_config.normalisation.method == "meanstd"
    assert train_config.augmentation.gamma == (0.5, 2.0)
    assert train_config.augmentation.blur_probability == 0.0
    plain = config.parameters()["training"]
    assert plain["normalisation"]["percentiles"] == [1.0, 99.8]  # JSON-able, defaults filled
    data["training"]["normalisation"] = {"method": "zscore"}
    with pytest.raises(InvalidInputError, match=r"training\.normalisation\.method: 'zscore'"):
        load_config(write(inputs, "bad.yaml", yaml.safe_dump(data)))
    data["training"]["normalisation"] = {"percentiles": [99, 1]}
    with pytest.raises(InvalidInputError, match=r"training\.normalisation: .*low < high"):
        load_config(write(inputs, "bad.yaml", yaml.safe_dump(data)))


def test_minimal_config_gets_defaults(inputs: Path) -> None:
    config = load_config(write(inputs, "run.yml", "data:\n  image: image.ome.zarr\n"))
    assert config.model.unet.width == 16 and config.model.unet.depth == 2
    assert config.training == {}
    assert config.filter.method == "none"
    assert config.gt_labels is None and config.out is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["segment"].update(blok=3), "segment: unknown key(s) blok"),
        (lambda d: d["segment"].update(seed_threshold="high"), "segment.seed_threshold: expected"),
        (lambda d: d["predict"].update(block=[64, "x"]), "predict.block[1]: expected an integer"),
        (lambda d: d["training"].update(batch_size=2.5), "training.batch_size: expected"),
        (lambda d: d["training"].update(epochs=3), "training: unknown key(s) epochs"),
        (lambda d: d["training"].update(voxel_size=[1, 1, 1]), "come from the model and data"),
        (lambda d: d["model"].update(widht=4), "model: unknown key(s) widht"),
        (lambda d: d["model"].update(dims=4), "model: U-Net dims must be 2 or 3"),
        (lambda d: d["model"].update(heads=[{"name": "p"}]), "model.heads[0].kind: required"),
        (lambda d: d["data"].update(image="absent.ome.zarr"), "data.image: "),
        (lambda d: d["data"].pop("image"), "data.image: required key is missing"),
        (lambda d: d.pop("data"), "data: required section is missing"),
        (lambda d: d.update(extra={}), "unknown section(s) extra"),
        (lambda d: d["filter"].pop("t_volume"), "needs both t_volume and t_sphericity"),
        (lambda d: d["filter"].update(method="magic"), "filter.method: 'magic' is not one of"),
        (lambda d: d["training"].update(augment=1), "training.augment: expected true or false"),
        (lambda d: d["segment"].update(block=0), "segment.block: values must be positive"),
        (lambda d: d["mesh"].update(simplify_ratio=2), "mesh.simplify_ratio: must be in"),
    ],
)
def test_bad_configs_name_the_key(inputs: Path, edit: object, message: str) -> None:
    data = yaml.safe_load(YAML)
    data["mesh"] = {}
    edit(data)  # type: ignore[operator]
    path = write(inputs, "bad.yaml", yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        load_config(path)


def test_missing_input_file_is_named_with_its_path(inputs: Path) -> None:
    data = yaml.safe_load(YAML)
    data["filter"] = {"method": "tables", "tp": "tp.csv", "fp": "fp.csv"}
    with pytest.raises(InvalidInputError, match=r"filter\.tp: .*tp\.csv does not exist"):
        load_config(write(inputs, "run.yaml", yaml.safe_dump(data)))


def test_unreadable_files(inputs: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_config(inputs / "absent.yaml")
    with pytest.raises(InvalidInputError, match=r"\.yaml, \.yml or \.toml"):
        load_config(write(inputs, "run.json", "{}"))
    with pytest.raises(InvalidInputError, match="cannot parse"):
        load_config(write(inputs, "run.toml", "data = [unclosed"))
    with pytest.raises(InvalidInputError, match="sections"):
        load_config(write(inputs, "run.yaml", "- just\n- a list\n"))


def test_example_config_is_valid(tmp_path: Path) -> None:
    example = tmp_path / "examples" / "pipeline.yaml"
    example.parent.mkdir()
    shutil.copy(REPO / "examples" / "pipeline.yaml", example)
    make_store(tmp_path / "data")
    (tmp_path / "data" / "boxes.csv").write_text("x,y,z,w,h,d\n0,0,0,8,8,8\n")
    config = load_config(example)
    assert config.out == tmp_path / "examples" / ".." / "runs" / "demo"
    assert config.filter.method == "ground_truth"
    assert config.train_config((200.0,) * 3).patch_shape == (116, 116, 112)
    assert config.model.unet.output_shape((116, 116, 112)) == (76, 76, 72)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "x,y,z,w,h,d\n0,0,0,8,8,9\n",
            r"data\.boxes: .*boxes\.csv: line 2: column 'z'.*not in",
        ),
        ("x0,y0,z0,x1,y1,z1\n0,0,0,8,8,8\n0,0,0,4,x,4\n", r"line 3: column 'y1'"),
        ("name,x_um,y_um,z_um,w_um,h_um,d_um\na,0,0,0,0.8,0.8,2.0\n", r"line 2: column 'z_um'"),
        ("x,y,w,h\n0,0,4,4\n", r"line 1: a 3D image needs z and d"),
    ],
)
def test_a_bad_box_table_fails_at_load_naming_file_row_and_column(
    inputs: Path, table: str, message: str
) -> None:
    """The corner table ``run`` rejected 31 s into a run now fails (or passes) at load."""
    (inputs / "boxes.csv").write_text(table)
    with pytest.raises(InvalidInputError, match=message):
        load_config(write(inputs, "run.yaml", YAML))


def test_corner_and_physical_box_tables_load(inputs: Path) -> None:
    (inputs / "boxes.csv").write_text("x0,y0,z0,x1,y1,z1\n0,0,0,16,16,8\n")
    load_config(write(inputs, "run.yaml", YAML))
    (inputs / "boxes.csv").write_text("x_um,y_um,z_um,w_um,h_um,d_um\n0,0,0,1.6,1.6,1.6\n")
    load_config(write(inputs, "run.yaml", YAML))


def test_a_named_model_reads_as_many_channels_as_its_network(tmp_path: Path) -> None:
    """A fine-tune of a three-channel 2D model, or segmenting with it, on a three-channel image:
    the box tables are checked against the image read with the file's channels (the model
    section gives none: the file keeps its network), not refused as "a single channel"."""
    import tifffile

    from pipeline.model_io import save_model
    from pipeline.unet import UNet, UNetConfig

    image = np.zeros((3, 64, 64), np.uint16)
    tifffile.imwrite(tmp_path / "if.tif", image, metadata={"axes": "CYX"}, photometric="minisblack")
    convert_to_ome_zarr(
        tmp_path / "if.tif", tmp_path / "if", voxel_size=(0.1, 0.1), unit="micrometer"
    )
    tifffile.imwrite(tmp_path / "labels.tif", np.zeros((64, 64), np.uint32))
    (tmp_path / "boxes.csv").write_text("name,x,y,w,h\na,0,0,32,32\n")
    save_model(
        tmp_path / "if.pt", UNet(UNetConfig(dims=2, in_channels=3, width=2, depth=1)),
        mean=0.0, std=1.0, voxel_size=(100.0, 100.0), metadata={},
    )  # fmt: skip
    data = {"image": "if/image.ome.zarr", "labels": "labels.tif", "boxes": "boxes.csv"}
    tune = {"data": data, "training": {"init_model": "if.pt"}}
    config = load_config(write(tmp_path, "tune.yaml", yaml.safe_dump(tune)))
    assert config.train_config((100.0, 100.0)).unet.in_channels == 3
    segment = {"data": {"image": data["image"]}, "model": {"path": "if.pt"},
               "evaluate": {"labels": "labels.tif", "boxes": "boxes.csv"}}  # fmt: skip
    assert load_config(write(tmp_path, "segment.yaml", yaml.safe_dump(segment))).model.path
    # A new network given no channels is still told what is wrong with a multichannel image.
    with pytest.raises(InvalidInputError, match="channel"):
        load_config(write(tmp_path, "new.yaml", yaml.safe_dump({"data": data})))
