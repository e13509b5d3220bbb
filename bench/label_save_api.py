"""Saving painted labels through the site: 100 changed 64^3 chunks in one POST, as the page sends.

    .venv/bin/python bench/label_save_api.py [--repeats 5] [--services]

``bench/label_store.py`` times the store alone; this one times the whole save a user waits for:
the site started as ``make up`` starts its web server (``webapp.embedded``'s gunicorn command,
``webapp/gunicorn_conf.py``), one annotator's task over a 256 x 320 x 320 box (4 x 5 x 5 chunks of
64^3 uint32, 100 MiB of labels) of a synthetic nuclei dataset, and each measured save paints a
new ball into every chunk and POSTs all 100 chunks to ``labels/`` (multipart, one part per
chunk, based on the current version) over HTTP on this machine, the way the painting editor
does (``saveForm``: raw uint32 parts). Variants in the same run on the same chunks: the parts
gzip-compressed by the client (``encoding=gzip``; the client's compression time is printed
apart), and the baseline ``services.labels_save`` called in this process (the store, the
version row and its manifest; no HTTP, no form parsing). Issue 10's goal: a save under 1 s.

The database is the embedded SQLite in a temporary directory, or with ``--services`` the
environment's ``DATABASE_URL`` (PostgreSQL; migrated here, so give it a database of its own).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.run import django_here  # noqa: E402
from bench.viewer import start_site  # noqa: E402

GOAL_S = 1.0
CHUNK = 64
GRID = (4, 5, 5)  # chunks along z, y, x: 100
VOXEL_NM = 200.0


def _setup(root: Path) -> tuple[int, str]:
    """The dataset, a painted campaign with one box covering it, an annotator holding its task;
    answers the assignment's id and the annotator's API token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tests.browser.nuclei_dataset import build_nuclei_dataset
    from webapp.annotation import services
    from webapp.annotation.models import Role
    from webapp.datasets.models import Layer, LayerKind, Visibility

    users = get_user_model().objects
    owner = users.create_user("bench-owner")
    annotator = users.create_user("bench-annotator")
    shape = tuple(n * CHUNK for n in GRID)
    dataset = build_nuclei_dataset(
        owner, slug="bench-labels", shape=shape, n_nuclei=60, visibility=Visibility.PUBLIC
    )  # type: ignore[arg-type]
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
    spec = services.CampaignSpec(
        name="Bench painted", instructions="", label_schema=None,
        box_size_um=[n * VOXEL_NM / 1000 for n in shape], redundancy=1,
    )  # fmt: skip
    campaign = services.campaign_create(owner, dataset, layer, spec)
    campaign.painted = True
    campaign.save()
    services.member_add(campaign, owner, annotator.username, Role.ANNOTATOR)
    centre = tuple(n // 2 for n in shape)
    services.boxes_from_points(campaign, owner, [("all", centre)], "bench")
    row = services.next_task(campaign, annotator)
    assert row is not None
    return row.pk, Token.objects.create(user=annotator).key


def _chunks(rng: np.random.Generator, labels: np.ndarray) -> dict[tuple[int, int, int], Any]:
    """Every chunk of ``labels`` after painting a new small ball into each (all change)."""
    out = {}
    zz, yy, xx = np.ogrid[:CHUNK, :CHUNK, :CHUNK]
    for index in np.ndindex(*GRID):
        region = tuple(slice(i * CHUNK, (i + 1) * CHUNK) for i in index)
        c = rng.integers(8, CHUNK - 8, 3)
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 36
        labels[region][ball] = int(rng.integers(1, 2**31))
        out[index] = np.ascontiguousarray(labels[region])
    return out


def _form(chunks: dict[Any, Any], zipped: bool) -> dict[str, tuple[str, bytes, str]]:
    """The multipart file parts of a save: one per chunk named z.y.x, raw or gzip."""
    files = {}
    for index, array in chunks.items():
        body = array.astype("<u4").tobytes()
        if zipped:
            body = gzip.compress(body, compresslevel=1)
        files[".".join(map(str, index))] = ("chunk", body, "application/octet-stream")
    return files


def _post(url: str, token: str, version: int, files: dict[str, Any], zipped: bool) -> int:
    data = {"base_version": str(version), **({"encoding": "gzip"} if zipped else {})}
    answer = requests.post(
        url, data=data, files=files, headers={"Authorization": f"Token {token}"}, timeout=120
    )
    if answer.status_code != 200:
        raise SystemExit(f"save refused: {answer.status_code} {answer.text[:300]}")
    return int(answer.json()["version"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--services", action="store_true", help="PostgreSQL from DATABASE_URL")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-label-save-"))
    env = django_here(root, args.services)
    from django.contrib.auth import get_user_model

    from webapp.annotation import services
    from webapp.annotation.models import Assignment

    t0 = time.perf_counter()
    assignment_id, token = _setup(root)
    print(f"dataset and task ready in {time.perf_counter() - t0:.0f} s", flush=True)
    site = start_site(root / "site", env)
    url = f"{site.url}/api/v1/annotation/assignments/{assignment_id}/labels/"
    rng = np.random.default_rng(0)
    labels = np.zeros(tuple(n * CHUNK for n in GRID), np.uint32)
    times: dict[str, list[float]] = {"raw": [], "gzip": [], "service": []}
    zip_seconds: list[float] = []
    payload = {"raw": 0, "gzip": 0, "service": 0}
    try:
        first = _form(_chunks(rng, labels), zipped=False)
        version = _post(url, token, 0, first, zipped=False)  # version 1: every chunk new
        annotator = get_user_model().objects.get(username="bench-annotator")
        for _ in range(args.repeats):
            for way in ("raw", "gzip", "service"):
                chunks = _chunks(rng, labels)
                start = time.perf_counter()
                files = _form(chunks, zipped=way == "gzip") if way != "service" else {}
                if way == "gzip":
                    zip_seconds.append(time.perf_counter() - start)
                payload[way] = sum(len(f[1]) for f in files.values())
                start = time.perf_counter()
                if way == "service":
                    row = Assignment.objects.get(pk=assignment_id)
                    version = services.labels_save(row, annotator, version, chunks).version
                else:
                    version = _post(url, token, version, files, zipped=way == "gzip")
                times[way].append(time.perf_counter() - start)
                print(f"  {way:8} {times[way][-1]:.3f} s (version {version})", flush=True)
    finally:
        site.stop()
    base = statistics.median(times["service"])
    print(f"\n100 changed 64^3 chunks per save, median of {args.repeats} (goal < {GOAL_S} s):")
    print(f"{'':40} {'median s':>9} {'min s':>7} {'max s':>7} {'x service':>10}")
    names = {
        "raw": f"POST over HTTP, raw parts ({payload['raw'] / 2**20:.0f} MiB)",
        "gzip": f"POST over HTTP, gzip parts ({payload['gzip'] / 2**20:.1f} MiB)",
        "service": "baseline: services.labels_save in-process",
    }
    for way, name in names.items():
        t = times[way]
        print(f"{name:40} {statistics.median(t):9.3f} {min(t):7.3f} {max(t):7.3f} "
              f"{statistics.median(t) / base:9.2f}x")  # fmt: skip
    print(f"client gzip of the 100 chunks (level 1): {statistics.median(zip_seconds):.3f} s")


if __name__ == "__main__":
    main()
