"""Schemathesis over the whole OpenAPI schema, against a live server on the test database.

Any 5xx, any status code the schema does not list, any body, content type or header that does
not match the schema, and any operation declared as needing authentication that answers an
anonymous caller, fails the test. Runs as an anonymous visitor, as a user owning data (API
token, every phase including coverage) and as a superuser (examples and fuzzing), each with a
fixed seed and a bounded number of examples per operation, so a run takes about the same time
and finds the same things every time.

The token's own DELETE and rotate operations end the token, so they run last, in a run of their
own. The schemathesis command line runs in a subprocess (what a person would run by hand); the
server is pytest-django's live server in this process, on the database the test created
(PostgreSQL when ``DATABASE_URL`` names it, as in CI).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from pipeline.annotation_points import write_detection_points
from pipeline.detections import Geometry
from webapp.accounts.models import Team
from webapp.curation.models import CurationJob, CurationKind
from webapp.datasets.models import (
    Dataset,
    DatasetJob,
    JobKind,
    Layer,
    LayerKind,
    ShareLink,
    Visibility,
)
from webapp.detections.models import BBOX_COLUMNS, CENTROID_COLUMNS, Detection
from webapp.detections.points import layer_points_path
from webapp.proofreading import services as proofreading
from webapp.proofreading.models import CampaignMember
from webapp.stereology import services as stereology
from webapp.viewer.models import SavedState

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[3]
SEED = 20261207
MAX_EXAMPLES = int(os.environ.get("ANNOTOME_FUZZ_MAX_EXAMPLES", "5"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "ignored_auth",
    ]
)
# DELETE and rotate end the token: its operations run last, in a run of their own.
TOKEN_PATHS = r"^/api/v1/auth/token/"


def _dataset(slug: str, owner: Any, visibility: str, team: Team | None = None) -> Dataset:
    dataset = Dataset.objects.create(
        name=f"Cells {slug}", slug=slug, owner=owner, visibility=visibility, team=team
    )
    common = {"shape": [16, 24, 32], "axes": ["z", "y", "x"], "voxel_size": [400.0, 200.0, 200.0]}
    Layer.objects.create(
        dataset=dataset, name="image", kind=LayerKind.IMAGE, path="image.ome.zarr",
        ngff_version="0.5", dtype="uint16", contrast_min=0, contrast_max=1000, **common,
    )  # fmt: skip
    seg = Layer.objects.create(
        dataset=dataset, name="nuclei", kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei", ngff_version="0.4", dtype="uint32", **common,
    )  # fmt: skip
    Layer.objects.create(
        dataset=dataset, name="nuclei-meshes", kind=LayerKind.MESH, path="meshes/nuclei",
        source_layer=seg,
    )  # fmt: skip
    Layer.objects.create(
        dataset=dataset, name="loose-meshes", kind=LayerKind.MESH, path="meshes/loose"
    )
    for segment_id in (1, 2):  # a detections table (no build: its files do not exist)
        Detection.objects.create(
            layer=seg, segment_id=segment_id, voxels=10 * segment_id, volume=0.1 * segment_id,
            surface_area=None if segment_id == 2 else 1.5, sphericity=None, mean_intensity=None,
            mean_probability=None, **{c: 1.0 for c in CENTROID_COLUMNS},
            **{c: (0 if c.endswith("0") else 3) for c in BBOX_COLUMNS if not c.endswith("_um")},
            **{c: 0.5 for c in BBOX_COLUMNS if c.endswith("_um")},
        )  # fmt: skip
    # The same rows as points, as a build writes them: the status API then reports a source.
    write_detection_points(
        pd.DataFrame({"segment_id": [1, 2], **{f"centroid_{a}": [1.0, 1.0] for a in "zyx"}}),
        dataset.root / layer_points_path(seg),
        Geometry((400.0, 200.0, 200.0)),
        shape=(16, 24, 32),
    )
    return dataset


def _proofreading(owner: Any) -> dict[str, list[Any]]:
    """Two campaigns over a segmentation with a few detections (in a dataset of its own: the
    others' mesh layers have no files, which the detections endpoints meet only with rows):
    one with a verdict (kept: deleting it is refused), one empty; the owner manages, reviews
    and adjudicates."""
    dataset = Dataset.objects.create(
        name="Proofread", slug="proof", owner=owner, visibility=Visibility.PUBLIC
    )
    layer = Layer.objects.create(
        dataset=dataset, name="nuclei", kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei", ngff_version="0.4", dtype="uint32",
        shape=[16, 24, 32], axes=["z", "y", "x"], voxel_size=[400.0, 200.0, 200.0],
    )  # fmt: skip

    def box(i: int) -> dict[str, Any]:
        voxels = {f"bbox_{a}{e}": i + (e == "1") for a in "zyx" for e in "01"}
        return voxels | {f"bbox_{a}{e}_um": 0.1 * i for a in "zyx" for e in "01"}

    Detection.objects.bulk_create(
        Detection(
            layer=layer, segment_id=i + 1, voxels=10, volume=1.0 + i, sphericity=0.8,
            **{f"centroid_{a}": float(i) for a in "zyx"},
            **{f"centroid_{a}_um": 0.1 * i for a in "zyx"}, **box(i),
        )
        for i in range(6)
    )  # fmt: skip
    roles = [("owner", "reviewer"), ("owner", "expert"), ("member", "reviewer")]
    settings = proofreading.CampaignSettings(name="fuzzed", seed=1)
    kept = proofreading.campaign_create(owner, layer, settings, members=roles)
    empty = proofreading.campaign_create(owner, layer, settings)
    (handout,) = proofreading.items_next(kept, owner)
    verdict = proofreading.verdict_create(kept, owner, handout.item.id, "tp")
    point = proofreading.missed_object_add(kept, owner, 1, 2, 3, "fuzz")
    study = stereology.study_create(owner, kept, name="fuzzed", n_pairs=4, h_um=0.8, seed=1)
    mark = stereology.mark_add(study, owner, 0, study.pairs[0]["reference"], 2, 3)
    return {
        "campaign_id": [kept.id, empty.id],
        "member_id": list(CampaignMember.objects.values_list("id", flat=True)),
        "item_id": [handout.item.id],
        "verdict_id": [verdict.id],
        "missed_id": [point.id],
        "study_id": [study.id],
        "mark_id": [mark.id],
        "pair": [0, 1],
        "table_format": ["csv", "parquet"],
    }


def _annotation(owner: Any) -> dict[str, list[Any]]:
    """An annotation campaign over the public dataset's image, tiled in boxes, the owner its
    manager, annotator and reviewer, one task taken with a saved point and one submitted; an
    empty campaign; and a painted campaign with one task holding one saved labels chunk and
    another approved with one."""
    from webapp.annotation import services as annotation
    from webapp.annotation.models import Assignment, Role, TaskBox
    from webapp.annotation.models import CampaignMember as AnnotationMember
    from webapp.annotation.selectors import label_geometry

    layer = Layer.objects.get(dataset__slug="pub", name="image")
    spec = annotation.CampaignSpec(name="fuzzed", box_size_um=[4.0, 2.4, 3.2], redundancy=2)
    kept = annotation.campaign_create(owner, layer.dataset, layer, spec)
    for role in (Role.ANNOTATOR, Role.REVIEWER):
        annotation.member_add(kept, owner, "member", role)
    annotation.member_add(kept, owner, "owner", Role.ANNOTATOR)
    annotation.boxes_tile(kept, owner)
    first = annotation.next_task(kept, owner)
    assert first is not None
    point = {"op": "upsert", "uid": "p1", "kind": "point", "label": "nucleus",
             "coords": [[float(v + 2) for v in first.box.start]]}  # fmt: skip
    annotation.save(first, owner, 0, [point])
    annotation.submit(first, owner, 1)
    second = annotation.next_task(kept, owner)
    assert second is not None
    annotation.save(second, owner, 0, [{**point, "coords": [list(map(float, second.box.start))]}])
    empty = annotation.campaign_create(owner, layer.dataset, layer, spec)
    painted = annotation.campaign_create(
        owner, layer.dataset, layer, replace(spec, name="painted", painted=True)
    )
    annotation.member_add(painted, owner, "owner", Role.ANNOTATOR)
    annotation.boxes_tile(painted, owner)
    task = annotation.next_task(painted, owner)
    assert task is not None
    geometry = label_geometry(task.box)
    labels = np.zeros(geometry.chunk_shape_at((0, 0, 0)), np.uint32)
    labels[0, :2, :2] = 7
    annotation.labels_save(task, owner, 0, {(0, 0, 0): labels})
    # A second painted task, approved: the painted labels' export (labels.zip) has a box.
    annotation.member_add(painted, owner, "member", Role.ANNOTATOR)
    annotation.member_add(painted, owner, "owner", Role.REVIEWER)
    member = get_user_model().objects.get(username="member")
    painted_two = annotation.next_task(painted, member)
    assert painted_two is not None
    annotation.labels_save(painted_two, member, 0, {(0, 0, 0): labels})
    annotation.approve(annotation.submit(painted_two, member, 1), owner)
    return {
        "campaign_id": [kept.id, empty.id, painted.id],
        "member_id": list(AnnotationMember.objects.values_list("id", flat=True)),
        "box_id": list(TaskBox.objects.filter(campaign=kept).values_list("id", flat=True)[:4]),
        "assignment_id": [
            *Assignment.objects.filter(box__campaign=kept)
            .order_by("-annotator_id", "id")
            .values_list("id", flat=True)[:4],
            task.id,
        ],
    }


@pytest.fixture
def fuzz_world(transactional_db: None) -> dict[str, Any]:
    """Users with tokens, datasets of every visibility, links, a job and a saved view."""
    users = get_user_model().objects
    owner = users.create_user("owner", password="owner-pass-123")
    member = users.create_user("member", password="member-pass-123")
    root = users.create_superuser("root", password="root-pass-123")
    team = Team.objects.create(name="Lab", slug="lab")
    team.members.add(owner, member)
    public = _dataset("pub", owner, Visibility.PUBLIC)
    _dataset("teamed", owner, Visibility.TEAM, team)
    _dataset("priv", owner, Visibility.PRIVATE)
    _dataset("members", member, Visibility.PRIVATE)
    for slug in ("doomed-owner", "doomed-root"):
        _dataset(slug, owner, Visibility.PRIVATE)
    active = ShareLink.objects.create(dataset=public, created_by=owner, label="active")
    revoked = ShareLink.objects.create(dataset=public, created_by=owner, label="revoked")
    ShareLink.objects.filter(id=revoked.id).update(revoked_at=active.created)
    job = DatasetJob.objects.create(kind=JobKind.IMPORT, owner=owner, params={"name": "queued"})
    state = SavedState.objects.create(dataset=public, state={"layers": []}, created_by=owner)
    campaigns = _proofreading(owner)
    annotation = _annotation(owner)
    curation = CurationJob.objects.create(
        kind=CurationKind.PUBLISH,
        owner=owner,
        layer=Layer.objects.get(dataset__slug="proof", name="nuclei"),
        params={"name": "fuzzed-curated", "verdicts": ["tp"]},
    )
    return {
        "tokens": {
            "owner": Token.objects.create(user=owner).key,
            "root": Token.objects.create(user=root).key,
        },
        "objects": {
            "slug": ["pub", "teamed", "priv", "members"],
            "link_id": [active.id, revoked.id],
            "id": [job.id, curation.id],
            "key": [state.key],
            "layer_name": ["nuclei", "image", "nuclei-meshes"],
            "segment_id": [1, 2],
            "file_format": ["ply", "obj", "glb"],
            "table_format": ["csv", "parquet"],
            **campaigns,
            # Path parameters both apps name alike hold the objects of both.
            **annotation,
            "campaign_id": campaigns["campaign_id"] + annotation["campaign_id"],
            "member_id": campaigns["member_id"] + annotation["member_id"],
        },
    }


def _schemathesis(
    base_url: str,
    schema: Path,
    objects: dict[str, Any],
    *args: str,
    token: str = "",
    doomed: str = "",
    phases: str = "examples,coverage,fuzzing",
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.webapp.core.schemathesis_hooks",
        "ANNOTOME_FUZZ_OBJECTS": json.dumps(objects),
        "ANNOTOME_FUZZ_DOOMED_SLUG": doomed,
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", base_url,
        "--checks", CHECKS, "--phases", phases,
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--workers", "1", "--request-timeout", "30",
        "--no-color", "--suppress-health-check", "all", *args,
    ]  # fmt: skip
    if token:
        command += ["--header", f"Authorization: Token {token}"]
    start, server_cpu = time.monotonic(), time.process_time()
    client_cpu = _children_cpu()
    result = subprocess.run(
        command,
        cwd=schema.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    timing = (
        f"{time.monotonic() - start:.1f} s wall, CPU: schemathesis "
        f"{_children_cpu() - client_cpu:.1f} s, server {time.process_time() - server_cpu:.1f} s"
    )
    return result.returncode, result.stdout + result.stderr, timing


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.timeout(1500)  # four runs over ~90 operations; ~1.5 min quiet, ~9 min loaded
def test_schemathesis_finds_no_server_error_and_no_schema_lie(
    live_server: Any, fuzz_world: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    settings.VIEWER_STATE_SAVE_RATE = "100000/min"  # throttling is tested elsewhere
    url, objects, tokens = live_server.url, fuzz_world["objects"], fuzz_world["tokens"]
    # The schema as the live server serves it, fetched once (generating it takes seconds); its
    # folder is schemathesis's working directory, for the files it keeps there.
    schema = tmp_path / "openapi.json"
    with urllib.request.urlopen(f"{url}/api/schema/?format=json", timeout=300) as response:
        schema.write_bytes(response.read())
    not_token_paths = ["--exclude-path-regex", TOKEN_PATHS]
    # The coverage phase (every parameter's boundary and invalid values: ~90% of the cases, 5,885
    # of 6,652 for the owner) runs for the owner, who reaches every operation with data behind
    # it; the anonymous and superuser runs are about who may do what, and examples plus fuzzing
    # reach each operation (the four runs: 148 s before, 112 s after, one run each here).
    everything, access = "examples,coverage,fuzzing", "examples,fuzzing"
    plan: list[tuple[str, str, str, list[str], str]] = [  # who, token, doomed, filters, phases
        ("anonymous", "", "", [], access),
        ("owner", tokens["owner"], "doomed-owner", not_token_paths, everything),
        ("superuser", tokens["root"], "doomed-root", not_token_paths, access),
        ("owner, token operations", tokens["owner"], "", ["--include-path-regex", TOKEN_PATHS],
         everything),
    ]  # fmt: skip
    runs = [
        (who, _schemathesis(url, schema, objects, *args, token=token, doomed=doomed, phases=ph))
        for who, token, doomed, args, ph in plan
    ]
    for who, (_, output, seconds) in runs:
        summary = [line for line in output.splitlines() if "passed" in line or "failed" in line]
        print(f"schemathesis as {who}: {seconds}; {summary[-1:] if summary else output[-300:]}")
    failed = [(who, output) for who, (code, output, _) in runs if code != 0]
    assert not failed, "\n\n".join(f"=== as {who} ===\n{output[-12000:]}" for who, output in failed)
