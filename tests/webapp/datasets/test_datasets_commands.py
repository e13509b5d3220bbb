"""Management commands (import_volume, build_meshes, load_demo, ensure_demo_admin) and the page."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from datasets_testdata import ome_zarr_with_escaping_level
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from pipeline.precomputed import stored_segment_ids
from webapp.datasets.models import Dataset, DatasetJob, JobKind, JobStatus, LayerKind

pytestmark = pytest.mark.django_db


def _call(*args: Any, **kwargs: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


def test_import_volume_command(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    image, labels = tiff_pair
    out = _call(
        "import_volume", str(image), "--name", "CLI cells", "--voxel-size", "400", "200", "200",
        "--unit", "nanometer", "--labels", f"nuclei={labels}", "--owner", "owner",
        "--visibility", "public",
    )  # fmt: skip
    assert "/datasets/cli-cells/" in out
    dataset = Dataset.objects.get(slug="cli-cells")
    assert dataset.owner == owner and dataset.visibility == "public"
    kinds = {layer.name: layer.kind for layer in dataset.layers.all()}
    assert kinds == {"image": "image", "nuclei": "segmentation", "nuclei-meshes": "mesh"}
    assert dataset.layers.get(name="image").voxel_size == [400.0, 200.0, 200.0]
    job = DatasetJob.objects.get(dataset=dataset)  # the same job row as a web import
    assert job.kind == JobKind.IMPORT and job.status == JobStatus.SUCCEEDED
    assert image.exists() and labels.exists()


def test_import_volume_labels_named_after_the_file(
    owner: Any, tiff_pair: tuple[Path, Path]
) -> None:
    _call("import_volume", str(tiff_pair[0]), "--name", "Auto", "--voxel-size", "1", "1", "1",
          "--labels", str(tiff_pair[1]), "--owner", "owner")  # fmt: skip
    assert Dataset.objects.get(slug="auto").layers.filter(name="nuclei").exists()


def test_import_volume_bad_input_fails_clearly(owner: Any, tmp_path: Path, settings: Any) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"MM\x00*" + b"\xff" * 40)
    with pytest.raises(CommandError, match=r"broken\.tif"):
        _call("import_volume", str(bad), "--name", "Broken", "--voxel-size", "1", "1", "1",
              "--owner", "owner")  # fmt: skip
    with pytest.raises(CommandError, match="does not exist"):
        _call("import_volume", str(tmp_path / "nope.tif"), "--name", "x", "--owner", "owner")
    with pytest.raises(CommandError, match="No user"):
        _call("import_volume", str(bad), "--name", "x", "--owner", "ghost")
    assert not Dataset.objects.exists()
    assert not (Path(settings.DATA_ROOT) / "datasets").exists()


def test_build_meshes_command_rebuilds(owner: Any, tiff_pair: tuple[Path, Path]) -> None:
    _call("import_volume", str(tiff_pair[0]), "--name", "Mesh me", "--voxel-size", "1", "1", "1",
          "--labels", f"nuclei={tiff_pair[1]}", "--owner", "owner")  # fmt: skip
    dataset = Dataset.objects.get(slug="mesh-me")
    info = dataset.root / "meshes" / "nuclei" / "info"
    info.unlink()
    out = _call("build_meshes", "mesh-me", "--layer", "nuclei")
    assert "mesh-me/nuclei" in out
    assert json.loads(info.read_text())["@type"] == "neuroglancer_multilod_draco"
    assert dataset.layers.filter(kind=LayerKind.MESH).count() == 1
    with pytest.raises(CommandError, match="no segmentation layer"):
        _call("build_meshes", "mesh-me", "--layer", "image")
    with pytest.raises(CommandError, match="No dataset"):
        _call("build_meshes", "nope")


def test_load_demo_creates_a_public_dataset_and_is_idempotent(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    out = _call("load_demo", "--shape", "48", "48", "48", "--nuclei", "6", "--seed", "1")
    assert "/datasets/demo-nuclei/" in out
    dataset = Dataset.objects.get(slug="demo-nuclei")
    assert dataset.name == "Demo nuclei" and dataset.visibility == "public"
    assert dataset.owner.username == "demo" and not dataset.owner.has_usable_password()
    layers = {layer.name: layer for layer in dataset.layers.all()}
    assert set(layers) == {"image", "nuclei", "nuclei-meshes"}
    assert layers["image"].shape == [48, 48, 48]
    assert layers["image"].voxel_size == [200.0, 200.0, 200.0]
    assert layers["nuclei-meshes"].source_layer == layers["nuclei"]
    meshed = stored_segment_ids(dataset.root / "meshes" / "nuclei")  # ids in the shard files
    assert len(meshed) >= 3

    again = _call("load_demo", "--if-absent")
    assert "already present" in again
    assert Dataset.objects.get(slug="demo-nuclei").id == dataset.id

    with django_capture_on_commit_callbacks(execute=True):  # the old files go after commit
        _call("load_demo", "--shape", "32", "32", "32", "--nuclei", "3")  # replaces it
    replaced = Dataset.objects.get(slug="demo-nuclei")
    assert replaced.id != dataset.id
    assert replaced.layers.get(name="image").shape == [32, 32, 32]
    leftovers = [p.name for p in (Path(settings.DATA_ROOT) / "tmp").iterdir()]
    assert leftovers == []


def test_ensure_demo_admin(settings: Any, tmp_path: Path, monkeypatch: Any) -> None:
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.delenv("ANNOTOME_ADMIN_PASSWORD", raising=False)
    out = _call("ensure_demo_admin")
    assert out.startswith("Demo admin: username admin, password ")
    password = out.strip().rsplit(" ", 1)[-1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)
    assert (settings.VAR_DIR / "demo_admin_password.txt").read_text().strip() == password

    again = _call("ensure_demo_admin")
    assert "password set earlier" in again and password not in again
    assert get_user_model().objects.get(username="admin").check_password(password)

    monkeypatch.setenv("ANNOTOME_ADMIN_PASSWORD", "chosen-pass-42")
    reset = _call("ensure_demo_admin")
    assert "Demo admin: username admin, password chosen-pass-42" in reset
    assert get_user_model().objects.get(username="admin").check_password("chosen-pass-42")
    assert not (settings.VAR_DIR / "demo_admin_password.txt").exists()


def test_import_page_needs_login_and_has_the_form(owner: Any) -> None:
    client = Client()
    response = client.get("/datasets/import/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(owner)
    page = client.get("/datasets/import/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="import-form"' in html and "csrfmiddlewaretoken" in html
    # The page's script (built from frontend/src/pages/import.ts; tests/test_frontend_assets.py
    # checks that it is built) and the limit it checks before uploading.
    assert '<script type="module" src="/static/import.js"></script>' in html
    assert f'data-max-bytes="{django_settings.MAX_UPLOAD_BYTES}"' in html
    # The units: microscopy's four first, with their symbols, nanometres chosen; the rest of
    # NGFF's in their own group.
    common, other = html.split('<optgroup label="Other OME-NGFF units">')
    assert '<option value="nanometer" selected>nanometer (nm)</option>' in common
    assert '<option value="micrometer">micrometer (\u00b5m)</option>' in common
    assert common.count("<option") == 4
    assert '<option value="parsec">parsec</option>' in other


@pytest.mark.parametrize("register", [False, True])
def test_import_volume_names_a_level_path_outside_the_store(
    owner: Any, tmp_path: Path, register: bool
) -> None:
    store = ome_zarr_with_escaping_level(tmp_path / "escape.ome.zarr")
    args = ["--register-in-place"] if register else []
    with pytest.raises(CommandError) as refused:
        _call("import_volume", str(store), "--name", "Escape", "--owner", "owner", *args)
    message = str(refused.value)
    assert "escape.ome.zarr: pyramid level path '../outside' may not contain '..'" in message
    assert "internal error" not in message
    assert not Dataset.objects.exists()
