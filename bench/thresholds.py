"""The proofreading thresholds data endpoint with 1,000, 10,000 and 100,000 decided detections.

    .venv/bin/python bench/thresholds.py [--sizes 1000 10000 100000] [--repeats 7]
                                         [--database postgres://...] [--keep]

Starts the site as ``make up`` does (migrate, collectstatic, then ``webapp.embedded``: gunicorn
with ``webapp/gunicorn_conf.py``) on PostgreSQL: a fresh database ``annotome_bench_thresholds``
on the server of ``--database`` (default postgres://postgres@127.0.0.1:5432/), dropped at the
end. For each size it builds a detections table of made-up objects (the proofreading tests'
``synthetic_frame``), a campaign over it, and gives every item a random final verdict (TP, TP
with distortion, FP, uncertain), as a finished campaign has them.

The thresholds page draws its plots from ``GET /api/v1/proofreading/campaigns/<id>/thresholds/``
(every decided detection's volume, sphericity and verdict, as arrays). Each size is asked
``--repeats`` times after one warm-up request, with a kept-alive session authenticated by an API
token; the baseline measured in the same run is ``GET /api/v1/me/`` (a trivial authenticated
request). Printed: median and max ms, the body size, and the ratios to the baseline and to the
smallest size. Goal: 100,000 detections answered in under 1 s on this machine (the page then
stays usable on a campaign the size of a whole-brain volume). Then the page's "Fit" (``POST
.../thresholds/fit/``, five folds by box, recall >= 0.8; a run's start fits the same way) three
times per size: the fit's grid is at most 1,024 x 1,024 candidates (``pipeline.thresholds``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.site_db import manage, postgres_drop, postgres_site_env  # noqa: E402
from bench.viewer import Server, start_site  # noqa: E402

DATABASE = "annotome_bench_thresholds"
GOAL_MS = 1000.0
FIT_BODY = {"min_recall": 0.8, "n_folds": 5}

SETUP_CODE = """
import json
import numpy as np
from rest_framework.authtoken.models import Token
from tests.webapp.proofreading.proofreading_testdata import (
    DatasetFactory, SegmentationLayerFactory, UserFactory, campaign_with, synthetic_frame,
    table_with,
)
from webapp.proofreading.models import CampaignItem, ItemStatus
owner = UserFactory(username="bench-owner")
campaigns = {}
names = np.array(["tp", "tp_distortion", "fp", "uncertain"])
for n in %(sizes)r:
    frame = synthetic_frame(n, seed=3)
    layer = SegmentationLayerFactory(dataset=DatasetFactory(owner=owner, slug=f"bench-{n}"))
    table_with(layer, frame)
    campaign = campaign_with(layer, owner, seed=2)
    chosen = names[np.random.default_rng(0).integers(0, 4, n)]
    for name in names:
        CampaignItem.objects.filter(
            campaign=campaign, segment_id__in=frame.segment_id[chosen == name].tolist()
        ).update(status=ItemStatus.DECIDED, verdict=str(name))
    campaigns[n] = campaign.id
print(json.dumps({"token": Token.objects.create(user=owner).key, "campaigns": campaigns}))
"""


def timed(
    session: requests.Session, url: str, repeats: int, body: dict[str, Any] | None = None
) -> tuple[list[float], int]:
    """Milliseconds of ``repeats`` GETs (POSTs of ``body`` when given) after one warm-up, and
    the body size in bytes."""

    def ask() -> requests.Response:
        if body is None:
            return session.get(url, timeout=120)
        return session.post(url, json=body, timeout=120)

    warm = ask()
    warm.raise_for_status()
    ms = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = ask()
        ms.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return ms, len(warm.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-thresholds-"))
    site: Server | None = None
    rows: list[tuple[str, list[float], int]] = []
    fits: list[tuple[str, list[float], int]] = []
    try:
        env = postgres_site_env(args.database, DATABASE, tmp / "var")
        print(f"building {', '.join(map(str, args.sizes))} detections ...", file=sys.stderr)
        world = json.loads(
            manage(env, "shell", "-c", SETUP_CODE % {"sizes": args.sizes}).strip().splitlines()[-1]
        )
        site = start_site(tmp / "site", env)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {world['token']}"
        baseline = timed(session, f"{site.url}/api/v1/me/", args.repeats)
        rows.append(("baseline /api/v1/me/", *baseline))
        for n in args.sizes:
            campaign = world["campaigns"][str(n)]
            url = f"{site.url}/api/v1/proofreading/campaigns/{campaign}/thresholds/"
            ms, size = timed(session, url, args.repeats)
            assert len(session.get(url, timeout=120).json()["volume"]) == n
            rows.append((f"thresholds, {n:,} decided", ms, size))
        for n in args.sizes:  # the page's "Fit" (and a run's start): five folds by box
            url = f"{site.url}/api/v1/proofreading/campaigns/{world['campaigns'][str(n)]}"
            ms, size = timed(session, f"{url}/thresholds/fit/", 3, FIT_BODY)
            fits.append((f"fit, {n:,} decided", ms, size))
    finally:
        if site is not None:
            site.stop()
        postgres_drop(args.database, DATABASE)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    base = statistics.median(rows[0][1])
    head = f"{'median ms':>10} {'max ms':>9} {'MB':>7} {'x baseline':>11} {'x first':>8}"
    print(f"{'request':32} {head}")
    for group in (rows[:1], rows[1:], fits):
        first = statistics.median(group[0][1]) if group else base
        for name, ms, size in group:
            median = statistics.median(ms)
            print(
                f"{name:32} {median:10.1f} {max(ms):9.1f} {size / 1e6:7.2f} "
                f"{median / base:11.1f} {median / first:8.2f}"
            )
    largest = statistics.median(rows[-1][1])
    verdict = "met" if largest < GOAL_MS else "NOT met"
    print(f"goal: {rows[-1][0]} under {GOAL_MS:.0f} ms: {verdict} ({largest:.0f} ms)")


if __name__ == "__main__":
    main()
