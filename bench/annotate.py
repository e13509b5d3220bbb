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


CPU_KINDS = ("me", "next", "save", "submit", "annotations")


def cpu_child(rounds: int, profile: str | None) -> None:
    """In this process (Django set up from the environment): one annotator's rounds of
    ``/me/``, next task, 5 saves of ``batch`` points, GET annotations and submit through the
    Django test client (the whole middleware and DRF stack, no HTTP server), with the CPU time
    of this process and the SQL statements of each request; ``profile``: cProfile the saves."""
    import cProfile
    import pstats

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    world = json.loads(os.environ["BENCH_WORLD"])
    api = "/api/v1/annotation/"
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, list[int]] = defaultdict(list)
    rng = random.Random(0)
    profiles: list[cProfile.Profile] = []

    def call(client: APIClient, kind: str, method: str, path: str, **kw: Any) -> Any:
        started_cpu, started = time.process_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            response = getattr(client, method)(path, format="json", **kw)
        cpu[kind].append((time.process_time() - started_cpu) * 1000)
        wall[kind].append((time.perf_counter() - started) * 1000)
        queries[kind].append(len(captured.captured_queries))
        return response

    serial = 0
    for r in range(rounds + (1 if profile else 0)):
        profiling = r == rounds  # the profiled round, after the measured ones
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][r % len(world['tokens'])]}")
        call(client, "me", "get", "/api/v1/me/")
        task = call(client, "next", "post", f"{api}campaigns/{world['campaign']}/next/").json()
        pk, version = task["id"], task["version"]
        z0, y0, x0 = task["box"]["start"]
        for _ in range(SAVES_PER_TASK):
            ops = []
            for _ in range(world["batch"]):
                serial += 1
                ops.append({"op": "upsert", "uid": f"p{serial}", "kind": "point",
                            "label": "nucleus",
                            "coords": [[z0 + rng.random() * 40, y0 + rng.random() * 40,
                                        x0 + rng.random() * 40]]})  # fmt: skip
            if profiling:  # CPU time only: waiting on PostgreSQL is not this process's cost
                profiler = cProfile.Profile(time.process_time)
                saved = profiler.runcall(
                    client.post, f"{api}assignments/{pk}/annotations/", format="json",
                    data={"base_version": version, "ops": ops},
                )  # fmt: skip
                profiles.append(profiler)
            else:
                saved = call(client, "save", "post", f"{api}assignments/{pk}/annotations/",
                             data={"base_version": version, "ops": ops})  # fmt: skip
            assert saved.status_code == 200, saved.content
            version = saved.json()["version"]
        if profiling:
            break
        call(client, "annotations", "get", f"{api}assignments/{pk}/annotations/")
        done = call(client, "submit", "post", f"{api}assignments/{pk}/submit/",
                    data={"base_version": version})  # fmt: skip
        assert done.status_code == 200, done.content
    warm = max(1, rounds // 5)  # the first rounds import and warm caches
    out = {}
    for kind in CPU_KINDS:
        skip = warm * (SAVES_PER_TASK if kind == "save" else 1)
        out[kind] = {
            "cpu_ms": statistics.median(cpu[kind][skip:]),
            "wall_ms": statistics.median(wall[kind][skip:]),
            "queries": statistics.median(queries[kind][skip:]),
            "n": len(cpu[kind]) - skip,
        }
    print("CPU-RESULT " + json.dumps(out))
    if profile:
        stats = pstats.Stats(*profiles, stream=sys.stderr)
        stats.dump_stats(profile)
        print(f"cProfile of {len(profiles)} saves (CPU time of this process):", file=sys.stderr)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)


def in_process(args: argparse.Namespace) -> None:
    """``--in-process``: CPU time and statements per request in one process (module doc)."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-annotate-cpu-"))
    database = f"{args.database_name}_cpu"
    try:
        env = postgres_site_env(args.database, database, tmp / "var")
        code = SETUP_CODE % {"shape": list(SHAPE), "clients": 5}
        world = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
        world["batch"] = args.batch
        env["BENCH_WORLD"] = json.dumps(world)
        argv = [sys.executable, __file__, "--cpu-child", str(args.rounds)]
        if args.profile:
            argv += ["--profile", args.profile]
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"in-process run failed:\n{done.stdout}\n{done.stderr}")
    finally:
        postgres_drop(args.database, database)
        shutil.rmtree(tmp, ignore_errors=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("CPU-RESULT "))
    result = json.loads(line.removeprefix("CPU-RESULT "))
    print(
        f"In one process (Django test client, PostgreSQL, no concurrency), {args.rounds} tasks "
        f"of {SAVES_PER_TASK} saves of {args.batch} points; load average "
        f"{os.getloadavg()[0]:.1f}; medians:"
    )
    for kind, figures in result.items():
        print(
            f"  {kind:<12} CPU {figures['cpu_ms']:6.1f} ms  wall {figures['wall_ms']:6.1f} ms  "
            f"{figures['queries']:g} statements  (n={figures['n']})"
        )
    if args.profile:
        print(done.stderr)


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
    parser.add_argument("--database-name", default=DATABASE, help="the benchmark's database")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="instead: CPU time and statements per request in one process, no HTTP server",
    )
    parser.add_argument("--rounds", type=int, default=60, help="--in-process: tasks done")
    parser.add_argument("--profile", help="--in-process: cProfile the saves into this file")
    parser.add_argument("--cpu-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_child is not None:
        return cpu_child(args.cpu_child, args.profile)
    if args.in_process:
        return in_process(args)

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-annotate-"))
    site: Server | None = None
    try:
        env = postgres_site_env(args.database, args.database_name, tmp / "var")
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
        postgres_drop(args.database, args.database_name)
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
