"""Proofreading queue: time from a verdict key to the next detection drawn, real Chromium.

    .venv/bin/python bench/proofread.py [--steps 50] [--reloads 5] [--reuse DIR] [--keep]
                                        [--shape 256 256 256] [--nuclei 300]

Prepares a var directory and starts the site as bench/viewer.py does (``make up``'s migrate,
collectstatic, ``load_demo``: 256^3 synthetic nuclei, ~300 objects; gunicorn through
``webapp.embedded``), builds the demo's detections table (``manage.py build_detections``), and
creates a fresh campaign over its nuclei (random order, the default verdict set) with a reviewer.
Chromium (Debian's, the flags of tests/browser/conftest.py) logs in as the reviewer, opens the
queue page, and decides ``--steps`` detections by key presses as a person would (keys 1-4, mostly
1, with a pause of ~250 ms between the detection drawn and the next key, as a person looks).

A step's time is measured in the page, from the keydown event to the next detection drawn: the
embedded viewer's ``isReady()`` with the camera on the new detection's centroid (the queue page's
``annotome.timings``, see frontend/src/proofreading/page.ts). Requests per step: what the page
and its workers requested from one key press to the next (Playwright's request events). The
baseline, measured in the same run: the same step done by reloading the page (navigation start
to the current detection drawn), ``--reloads`` times.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.site_db import manage  # noqa: E402
from bench.viewer import (  # noqa: E402
    DEMO_SLUG,
    VIEWPORT,
    Server,
    percentile,
    prepare_var,
    request_kind,
    site_env,
    start_site,
)
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PASSWORD = "bench-reviewer-pass-123"
REVIEWER = "bench-reviewer"
READY_MS = 120_000
GOAL_P95_MS = 300.0

SETUP_CODE = """
import sys, time
from django.contrib.auth import get_user_model
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.proofreading import services
from webapp.proofreading.services import CampaignSettings
users = get_user_model().objects
reviewer, _ = users.get_or_create(username=%(reviewer)r)
reviewer.set_password(%(password)r)
reviewer.save()
dataset = Dataset.objects.get(slug=%(slug)r)
layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
campaign = services.campaign_create(
    dataset.owner, layer, CampaignSettings(name=f"bench {time.time():.0f}", seed=11),
    members=[(reviewer.username, "reviewer")],
)
print(campaign.id, campaign.n_items)
"""


def setup_campaign(env: dict[str, str]) -> tuple[int, int]:
    """A fresh campaign over the demo's nuclei with the bench's reviewer; (id, items)."""
    manage(env, "build_detections", DEMO_SLUG, "--missing")
    code = SETUP_CODE % {"reviewer": REVIEWER, "password": PASSWORD, "slug": DEMO_SLUG}
    campaign_id, n_items = manage(env, "shell", "-c", code).split()[-2:]
    return int(campaign_id), int(n_items)


def open_queue(page: Any, url: str) -> None:
    page.wait_for_function("() => window.annotome && annotome.current()", timeout=READY_MS)
    page.evaluate("() => annotome.drawn()")
    errors = page.evaluate("() => annotome.errors")
    if errors:
        raise RuntimeError(f"{url}: {errors}")


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):7.1f} ms  p95 {percentile(values, 95):7.1f} ms  "
        f"mean {statistics.fmean(values):7.1f} ms  max {max(values):7.1f} ms"
    )


def run_bench(site: Server, campaign_id: int, steps: int, reloads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="annotome-bench-proofread-")
    url = f"{site.url}/proofreading/{campaign_id}/"
    rng = random.Random(3)
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport=VIEWPORT,
            )
            page = context.pages[0] if context.pages else context.new_page()
            requests: list[str] = []
            context.on("request", lambda request: requests.append(request.url))
            page.goto(f"{site.url}/accounts/login/?next=/proofreading/{campaign_id}/")
            page.fill("#id_username", REVIEWER)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/proofreading/{campaign_id}/")
            open_queue(page, url)
            page.click("#queue-current h2")

            # Key presses as a person would: look (~250 ms), press; keys weighted toward "1".
            step_requests: list[int] = []
            kinds: dict[str, int] = {}
            outside: list[float] = []
            for index in range(steps):
                time.sleep(0.2 + rng.random() * 0.1)
                key = rng.choices("1234", weights=(70, 10, 15, 5))[0]
                before = len(requests)
                started = time.perf_counter()
                page.keyboard.press(key)
                page.wait_for_function(
                    "(n) => annotome.timings.length >= n", arg=index + 1, timeout=READY_MS
                )
                outside.append((time.perf_counter() - started) * 1000)
                # The step's requests: the key's verdict, the refill, data for the new view.
                page.evaluate("() => annotome.settled()")
                step_requests.append(len(requests) - before)
                for u in requests[before:]:
                    kind = request_kind(u) if "/api/" not in u else "api"
                    kinds[kind] = kinds.get(kind, 0) + 1
            timings = page.evaluate("() => annotome.timings.map((t) => t.ms)")
            errors = page.evaluate("() => annotome.errors")

            # Baseline: the same step by a page reload (navigation start to the detection drawn).
            reload_ms: list[float] = []
            reload_requests: list[int] = []
            for _ in range(reloads):
                before = len(requests)
                page.reload(wait_until="commit")
                open_queue(page, url)
                reload_ms.append(float(page.evaluate("() => performance.now()")))
                page.evaluate("() => annotome.settled()")
                reload_requests.append(len(requests) - before)
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "timings": [float(t) for t in timings],
        "outside": outside,
        "step_requests": step_requests,
        "kinds": kinds,
        "reload_ms": reload_ms,
        "reload_requests": reload_requests,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="detections decided by keys")
    parser.add_argument("--reloads", type=int, default=5, help="baseline page reloads")
    parser.add_argument("--reuse", type=Path, help="var directory to keep and reuse across runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--shape", nargs=3, type=int, default=[256, 256, 256])
    parser.add_argument("--nuclei", type=int, default=300)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-proofread-"))
    var_dir = (args.reuse or tmp / "var").resolve()
    site: Server | None = None
    try:
        env = site_env(var_dir)
        prepare_var(var_dir, env, args.shape, args.nuclei)
        campaign_id, n_items = setup_campaign(env)
        if n_items < args.steps + 5:
            raise SystemExit(f"the campaign has {n_items} items; fewer than --steps + 5")
        site = start_site(tmp / "site", env)
        result = run_bench(site, campaign_id, args.steps, args.reloads)
    finally:
        if site is not None:
            site.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    timings = result["timings"]
    steps = len(timings)
    print(f"Proofreading queue, demo {'x'.join(map(str, args.shape))}, {n_items} detections")
    print(f"  verdict key -> next detection drawn (in page, {steps} steps): {summary(timings)}")
    print(f"  same, seen from Playwright (press to step recorded): {summary(result['outside'])}")
    per_step = result["step_requests"]
    print(
        f"  requests per step: median {statistics.median(per_step):.0f}, "
        f"mean {statistics.fmean(per_step):.1f}, max {max(per_step)}; by kind over all steps: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items()))
    )
    reloads = result["reload_ms"]
    if reloads:
        print(
            f"  baseline, page reload to detection drawn ({len(reloads)} reloads): "
            f"{summary(reloads)}; requests per reload: median "
            f"{statistics.median(result['reload_requests']):.0f}"
        )
    p95 = percentile(timings, 95)
    verdict = "met" if p95 < GOAL_P95_MS else "NOT met"
    print(f"  goal p95 < {GOAL_P95_MS:.0f} ms: {verdict} (p95 {p95:.1f} ms)")
    if result["errors"]:
        print(f"  page errors: {result['errors']}")


if __name__ == "__main__":
    main()
