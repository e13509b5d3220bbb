"""Annotation campaigns under load: 50 annotators saving points and asking for tasks at once.

    .venv/bin/python bench/annotate.py [--clients 50] [--duration 30] [--batch 10]
                                       [--stale 0.1] [--database postgres://...] [--keep]

Starts the site as ``make up`` does (migrate, collectstatic, then ``webapp.embedded``: gunicorn
with ``webapp/gunicorn_conf.py``), on PostgreSQL: a fresh database ``annotome_bench_annotate``
on the server of ``--database`` (default postgres://postgres@127.0.0.1:5432/), dropped at the
end. It creates a dataset with an image layer row of 200 x 1000 x 1000 voxels of 1 um (no image
files: the API never reads them), a campaign of 50 um boxes (1,600 boxes, N = 2: 3,200 slots)
and ``--clients`` annotators, each with an API token.

Each client is a thread with its own HTTP session (keep-alive) acting as one annotator, waiting
``--think`` seconds on average (0.5-1.5x) before each request, as a person's page does (the task
page batches changes and saves about once a second; 0 sends flat out, which measures queueing
behind the server's 2 x 8 threads rather than a request's own time): POST
``next/`` for a task, then saves of ``--batch`` new points at a time based on the version it
holds; with probability ``--stale`` a save is sent deliberately stale (based on the version
before), which must be refused with 409 naming the current version, after which the client
applies the same points on top (as the task page does) and saves again. After 5 saves it submits
the task and asks for the next. Every iteration also GETs ``/api/v1/me/``: the baseline, a
trivial authenticated request under the same concurrency in the same run.

At the end everything is read back through the API: for every acknowledged save, the points it
wrote are in the assignment's annotations at that version and in the current ones, and each
assignment's revisions are exactly the acknowledged versions (a refused write made none). Any
difference is a lost (or phantom) write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.site_db import manage, postgres_drop, postgres_site_env  # noqa: E402
from bench.viewer import Server, percentile, start_site  # noqa: E402

DATABASE = "annotome_bench_annotate"
GOAL_P95_MS = 100.0
SAVES_PER_TASK = 5
SHAPE = (200, 1000, 1000)

SETUP_CODE = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from webapp.annotation import services
from webapp.annotation.models import Role
from webapp.datasets.models import Dataset, Layer, LayerKind
users = get_user_model().objects
owner = users.create_user("bench-owner", password="bench-owner-pass-123")
dataset = Dataset.objects.create(name="Bench annotate", slug="bench-annotate", owner=owner,
                                 visibility="public")
layer = Layer.objects.create(
    dataset=dataset, name="image", kind=LayerKind.IMAGE, path="image.ome.zarr",
    ngff_version="0.5", dtype="uint16", shape=%(shape)r, axes=["z", "y", "x"],
    voxel_size=[1000.0, 1000.0, 1000.0], contrast_min=0, contrast_max=1000,
)
spec = services.CampaignSpec(name="bench", box_size_um=[50.0, 50.0, 50.0], redundancy=2)
campaign = services.campaign_create(owner, dataset, layer, spec)
services.boxes_tile(campaign, owner)
tokens = []
for i in range(%(clients)d):
    user = users.create_user(f"bench-ann{i}", password="bench-ann-pass-123")
    services.member_add(campaign, owner, user.username, Role.ANNOTATOR)
    tokens.append(Token.objects.create(user=user).key)
print(json.dumps({"campaign": campaign.id, "boxes": campaign.boxes.count(),
                  "owner": Token.objects.create(user=owner).key, "tokens": tokens}))
"""


class Tally:
    """What the clients measured and what the server acknowledged, shared by the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        # assignment id -> {version: uids written by that acknowledged save}
        self.acked: dict[int, dict[int, list[str]]] = defaultdict(dict)
        self.errors: list[str] = []

    def time(self, kind: str, started: float) -> None:
        with self.lock:
            self.ms[kind].append((time.perf_counter() - started) * 1000)


def client(
    url: str, campaign: int, token: str, index: int, batch: int, stale: float, think: float,
    until: float, tally: Tally,
) -> None:  # fmt: skip
    import requests

    rng = random.Random(index)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    api = f"{url}/api/v1/annotation/"
    serial = 0

    def timed(kind: str, method: str, path: str, **kw: Any) -> Any:
        if think:  # a person's pace: the page batches changes and sends them about once a second
            time.sleep(think * (0.5 + rng.random()))
        started = time.perf_counter()
        response = session.request(method, path, timeout=60, **kw)
        tally.time(kind, started)
        return response

    try:
        while time.perf_counter() < until:
            me = timed("me", "GET", f"{url}/api/v1/me/")
            if me.status_code != 200:
                raise RuntimeError(f"/me/: {me.status_code}")
            got = timed("next", "POST", f"{api}campaigns/{campaign}/next/")
            if got.status_code == 204:
                return
            if got.status_code != 200:
                raise RuntimeError(f"next: {got.status_code} {got.text[:200]}")
            task = got.json()
            pk, version = task["id"], task["version"]
            z0, y0, x0 = task["box"]["start"]
            depth, height, width = task["box"]["size"]
            for _ in range(SAVES_PER_TASK):
                if time.perf_counter() >= until:
                    return
                ops = []
                for _ in range(batch):
                    serial += 1
                    ops.append({"op": "upsert", "uid": f"c{index}-{serial}", "kind": "point",
                                "label": "nucleus",
                                "coords": [[z0 + rng.random() * (depth - 1),
                                            y0 + rng.random() * (height - 1),
                                            x0 + rng.random() * (width - 1)]]})  # fmt: skip
                if version > 0 and rng.random() < stale:
                    refused = timed("save", "POST", f"{api}assignments/{pk}/annotations/",
                                    json={"base_version": version - 1, "ops": ops})  # fmt: skip
                    body = refused.json()
                    if refused.status_code != 409 or body.get("current_version") != version:
                        raise RuntimeError(f"stale save: {refused.status_code} {body}")
                    with tally.lock:
                        tally.counts["conflicts"] += 1
                saved = timed("save", "POST", f"{api}assignments/{pk}/annotations/",
                              json={"base_version": version, "ops": ops})  # fmt: skip
                if saved.status_code != 200:
                    raise RuntimeError(f"save: {saved.status_code} {saved.text[:200]}")
                version = saved.json()["version"]
                with tally.lock:
                    tally.acked[pk][version] = [op["uid"] for op in ops]
                    tally.counts["points"] += len(ops)
            done = timed("submit", "POST", f"{api}assignments/{pk}/submit/",
                         json={"base_version": version})  # fmt: skip
            if done.status_code != 200:
                raise RuntimeError(f"submit: {done.status_code} {done.text[:200]}")
            with tally.lock:
                tally.counts["tasks"] += 1
    except Exception as exc:  # reported at the end
        with tally.lock:
            tally.errors.append(f"client {index}: {exc!r}")


def verify(url: str, owner_token: str, tally: Tally) -> dict[str, int]:
    """Read every acknowledged save back through the API (as the manager)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {owner_token}"
    api = f"{url}/api/v1/annotation/assignments/"
    lost = phantom = checked = 0
    for pk, saves in tally.acked.items():
        current = session.get(f"{api}{pk}/annotations/", timeout=60).json()
        now = {a["uid"] for a in current["annotations"]}
        revisions = session.get(f"{api}{pk}/revisions/", timeout=60).json()
        numbers = {r["number"] for r in revisions}
        phantom += len(numbers - set(saves))
        for version, uids in saves.items():
            at = session.get(f"{api}{pk}/annotations/?version={version}", timeout=60).json()
            there = {a["uid"] for a in at["annotations"]}
            missing = [u for u in uids if u not in there or u not in now]
            lost += len(missing) + (version not in numbers)
            checked += len(uids)
    return {"lost": lost, "phantom": phantom, "checked": checked, "assignments": len(tally.acked)}


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 50):6.1f} ms  p95 {percentile(values, 95):6.1f} ms  "
        f"mean {statistics.fmean(values):6.1f} ms  max {max(values):7.1f} ms  (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--batch", type=int, default=10, help="points per save")
    parser.add_argument("--stale", type=float, default=0.1, help="share of saves sent stale")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean seconds before each request (0: flat out)"
    )
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-annotate-"))
    site: Server | None = None
    try:
        env = postgres_site_env(args.database, DATABASE, tmp / "var")
        code = SETUP_CODE % {"shape": list(SHAPE), "clients": args.clients}
        world = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
        site = start_site(tmp / "site", env)
        tally = Tally()
        until = time.perf_counter() + args.duration
        threads = [
            threading.Thread(
                target=client,
                args=(
                    site.url,
                    world["campaign"],
                    token,
                    i,
                    args.batch,
                    args.stale,
                    args.think,
                    until,
                    tally,
                ),
            )
            for i, token in enumerate(world["tokens"])
        ]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        checked = verify(site.url, world["owner"], tally)
    finally:
        if site is not None:
            site.stop()
        postgres_drop(args.database, DATABASE)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ms, counts = tally.ms, tally.counts
    saves = len(ms["save"])
    print(
        f"Annotation under load: {args.clients} clients for {elapsed:.1f} s on PostgreSQL, "
        f"{world['boxes']} boxes x N=2, {args.batch} points per save, think time "
        f"{args.think:g} s; load average "
        f"{load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} CPUs"
    )
    print(f"  save (POST annotations/): {summary(ms['save'])}")
    print(f"  next task (POST next/):   {summary(ms['next'])}")
    print(f"  submit:                   {summary(ms['submit'])}")
    print(f"  baseline GET /api/v1/me/: {summary(ms['me'])}")
    base = percentile(ms["me"], 50), percentile(ms["me"], 95)
    for kind in ("save", "next"):
        print(
            f"  {kind} / baseline: p50 {percentile(ms[kind], 50) / base[0]:.2f}x, "
            f"p95 {percentile(ms[kind], 95) / base[1]:.2f}x"
        )
    total = sum(len(v) for v in ms.values())
    print(
        f"  throughput: {total / elapsed:.0f} requests/s, {saves / elapsed:.0f} saves/s; "
        f"tasks submitted {counts['tasks']}, points saved {counts['points']}"
    )
    print(f"  conflicts: {counts['conflicts']} stale saves sent, all refused with 409 + version")
    print(
        f"  read back: {checked['checked']} points of {checked['assignments']} assignments: "
        f"{checked['lost']} lost, {checked['phantom']} phantom revisions"
    )
    for kind in ("save", "next"):
        p95 = percentile(ms[kind], 95)
        verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
        print(f"  goal {kind} p95 < {GOAL_P95_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    if tally.errors:
        print(f"  client errors ({len(tally.errors)}): {tally.errors[:5]}")
    if tally.errors or checked["lost"] or checked["phantom"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
