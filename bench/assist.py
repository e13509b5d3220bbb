"""Model-assisted objects, scripted in real Chromium on the demo volume: user actions and seconds
per object whose Dice with the truth is >= 0.9, fully manual painting versus click-to-object
versus propose-and-correct.

    .venv/bin/python bench/assist.py [--boxes 3] [--box 64 64 64] [--manual-step 4]
                                     [--corrections 3] [--model tiny|standard]
                                     [--reuse DIR] [--keep]

One command. It prepares a var directory as ``make up`` does (``migrate``, ``collectstatic``,
``manage.py load_demo``: 256^3 synthetic nuclei, 300 objects, 200 nm voxels, seed 0, whose true
labels ``pipeline.synthetic.make_nuclei_volume`` makes again here), starts the site with its
Celery worker (``python -m webapp.embedded``, as ``make up``), and creates ``--boxes`` painted
campaigns of one task box each (seeded random places), each with three annotators: one per way
of working, so every strategy starts from an empty, fresh assignment of the same box. Debian's
Chromium (the flags of tests/browser/conftest.py) logs in as each annotator, opens the task's
Paint tab and works with the real mouse and keyboard; every click, key press and mouse drag is
one action, slice keys (F/D) included. Targets: every true object with at least a 1 um ball's
voxels inside the box (its part in the box), worked through in the z order of their deepest
voxels, as a person scrolls through the box.

- manual: the cheapest exact way the editor offers, key slices plus interpolation: C (new
  object); on every ``--manual-step``-th xy slice of the object (and its last), the outline
  traced with a 1-voxel brush (one drag along its inner boundary per piece of the slice), then
  G, a fill click inside, B; then V (shape-based interpolation of the slices between). The
  brush is set to 1 voxel once per box (4 presses of "-", shared by the box's targets).
- click-to-object: slice keys to the object's deepest voxel (its distance transform's maximum:
  where a person clicks, the middle), Alt+click, Enter; then, while Dice < 0.9, at most
  ``--corrections`` correction strokes, each on the slice where the object is most wrong: the
  largest missing (brush) or extra (eraser) piece there, one drag along its middle at the
  radius that fits it (tool and radius keys counted). Nothing proposed: painted as manual.
- propose-and-correct: the "Propose all" button (shared by the box's targets), then per
  proposal Enter when it matches a target not yet taken at IoU >= 0.5, else Esc (shared);
  corrections as above for accepted ones; targets left over are done by click.

With ``--model PRESET`` the loop is closed first-hand: after the three ways above (the classical
watershed proposes, no model exists yet), the demo's painted campaign (``load_demo_campaign``:
six approved 64^3 boxes) is retrained on the site's worker with that preset, the run's model
becomes the demo's current model, and click-to-object and propose-and-correct are played again
by two more annotators of the same boxes (``click-model``, ``propose-model``): the model's
published segmentation now proposes. The run's wall time, its held-out F1 and how much of each
bench box the training boxes cover are printed.

At the end the page's volume (``annotome.paint.editor.volume.data``) is read and every target's
Dice is the best Dice of one painted id with it. Reported per strategy: targets reaching Dice
>= 0.9, actions per such object (all the strategy's actions divided by them, and the mean and
median of their own actions with shared ones spread evenly), and wall seconds of the scripted
run per such object (the server's compute included; a person adds the time to look and decide).
Manual is the baseline, in the same run on the same boxes. Goal (issue 10): 3 or fewer actions
per object with assistance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage import measure, morphology
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.site_db import manage  # noqa: E402
from bench.viewer import DEMO_SLUG, VIEWPORT, prepare_var, site_env  # noqa: E402
from pipeline.synthetic import make_nuclei_volume  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.serving.nginx_harness import Server, free_port, wait_for_http  # noqa: E402

VOXEL_NM = 200.0  # the demo's (webapp/datasets/management/commands/load_demo.py)
SEED = 0
GOOD_DICE = 0.9
MIN_DIAMETER_UM = 1.0
PASSWORD = "bench-assist-pass-123"
STRATEGIES = ("manual", "click", "propose", "click-model", "propose-model")
MODEL_STRATEGIES = ("click-model", "propose-model")
NAMES = {
    "manual": "manual (baseline)",
    "click": "click-to-object",
    "propose": "propose-and-correct",
    "click-model": "click, model",
    "propose-model": "propose, model",
}
PAINT_READY = "() => annotome.paint !== null && annotome.paint.ready.then(() => true)"
WAIT_MS = 120_000

Mask = npt.NDArray[np.bool_]

SETUP_CODE = """
import json
from django.contrib.auth import get_user_model
from webapp.annotation import services
from webapp.annotation.models import Role
from webapp.datasets.models import Dataset, Layer, LayerKind
users = get_user_model().objects
people = {}
for s in %(strategies)r:
    user, _ = users.get_or_create(username="bench-" + s)
    user.set_password(%(password)r)
    user.save()
    people[s] = user
dataset = Dataset.objects.get(slug=%(slug)r)
layer = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
voxel = services.layer_geometry(layer)["voxel_size_um"]
out = []
for n, centre in enumerate(%(centres)r):
    spec = services.CampaignSpec(
        name=f"assist bench {n + 1}", instructions="Paint every nucleus.",
        box_size_um=[b * v for b, v in zip(%(box)r, voxel)], redundancy=len(people),
        painted=True,
    )
    campaign = services.campaign_create(dataset.owner, dataset, layer, spec)
    campaign.painted = True
    campaign.save()
    for user in people.values():
        services.member_add(campaign, dataset.owner, user.username, Role.ANNOTATOR)
    box = services.boxes_from_points(campaign, dataset.owner, [("bench", centre)], "bench")[0]
    rows = {s: services.next_task(campaign, u).pk for s, u in people.items()}
    out.append({"start": list(box.start), "size": list(box.size), "assignments": rows})
print(json.dumps(out))
"""

TRAIN_CODE = """
from django.contrib.auth import get_user_model
from webapp.annotation.models import AnnotationCampaign
from webapp.runs import services
from webapp.runs.management.commands.load_demo_campaign import NAME
campaign = AnnotationCampaign.objects.get(name=NAME)
admin = get_user_model().objects.get(username="admin")
run = services.run_start(admin, campaign, preset=%(preset)r)
boxes = [[list(b.start), list(b.size)] for b in campaign.boxes.filter(
    assignments__state="approved").distinct()]
print(json.dumps({"run": run.pk, "boxes": boxes}))
"""

RUN_STATE_CODE = """
from webapp.runs.models import ModelVersion, PipelineRun
run = PipelineRun.objects.get(pk=%(run)d)
version = ModelVersion.objects.filter(run=run).first()
f1 = None
if version is not None:
    evaluation = version.metrics.get("evaluation") or {}
    f1 = (evaluation.get("filtered") or evaluation.get("all") or {}).get("f1")
print(json.dumps({"status": run.status, "stage": run.stage, "progress": run.progress,
                  "error": run.error, "model": version and version.number,
                  "current": bool(version and version.current), "f1": f1}))
"""


# --- geometry from the truth -------------------------------------------------------------------


def dice(a: Mask, b: Mask) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def deepest_voxel(mask: Mask) -> tuple[int, int, int]:
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    z, y, x = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return int(z), int(y), int(x)


def outline(piece: Mask) -> list[tuple[int, int]]:
    """The inner boundary pixels (y, x) of a 2D piece in drawing order (its outer contour)."""
    contours = measure.find_contours(np.pad(piece, 1).astype(float), 0.5)  # type: ignore[no-untyped-call]
    contour = max(contours, key=len)
    path: list[tuple[int, int]] = []
    for r, c in contour - 1:
        # A contour point lies between an inside and an outside pixel: take the inside one.
        for y, x in ((int(np.floor(r)), int(np.floor(c))), (int(np.ceil(r)), int(np.ceil(c)))):
            inside = 0 <= y < piece.shape[0] and 0 <= x < piece.shape[1] and piece[y, x]
            if inside and (not path or path[-1] != (y, x)):
                path.append((y, x))
                break
    if not path:
        y0, x0 = np.argwhere(piece)[0]
        path.append((int(y0), int(x0)))
    return path


def thin(path: list[tuple[int, int]], every: int) -> list[tuple[int, int]]:
    """Every ``every``-th point of a closed path, closed again (chords of a convex piece stay
    inside it)."""
    kept = path[::every]
    return [*kept, path[-1], path[0]] if len(path) > 1 else kept


def middle_line(piece: Mask) -> tuple[float, list[tuple[int, int]]]:
    """A brush radius that fits ``piece`` and one drag along its middle: its skeleton walked
    from one end to the nearest next pixel while the next one is adjacent, thinned."""
    depth = ndimage.distance_transform_edt(np.pad(piece, 1))[1:-1, 1:-1]
    radius = max(0.5, float(depth.max()) - 1.0)
    skeleton = np.argwhere(morphology.skeletonize(piece))  # type: ignore[no-untyped-call]
    if not len(skeleton):
        skeleton = np.argwhere(piece)
    centred = skeleton - skeleton.mean(axis=0)
    if len(skeleton) > 1:
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        start = int(np.argmin(centred @ axis))
    else:
        start = 0
    left = [tuple(int(v) for v in p) for p in skeleton]
    path = [left.pop(start)]
    while left:
        y, x = path[-1]
        gaps = [max(abs(a - y), abs(b - x)) for a, b in left]
        k = int(np.argmin(gaps))
        if gaps[k] > 2:
            break
        path.append(left.pop(k))
    step = max(1, int(radius))
    kept = path[::step]
    if kept[-1] != path[-1]:
        kept.append(path[-1])
    return radius, kept  # type: ignore[return-value]


# --- the page --------------------------------------------------------------------------------


@dataclass
class Work:
    """The actions and wall seconds spent on one target (or shared by a box's targets)."""

    actions: Counter[str] = field(default_factory=Counter)  # shared ones as fractions
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.actions.values())


class Task:
    """One assignment's Paint tab, driven by the mouse and keyboard, every action counted on
    the Work it is charged to."""

    def __init__(self, page: Any, shape: tuple[int, int, int]) -> None:
        self.page = page
        self.shape = shape
        box = page.locator("[data-paint-view=xy] canvas").bounding_box()
        assert box is not None
        self.canvas = box
        self.radius = float(page.evaluate("() => annotome.paint.editor.radius"))
        self.tool = str(page.evaluate("() => annotome.paint.editor.tool"))

    def at(self, y: float, x: float) -> tuple[float, float]:
        c = self.canvas
        return (
            c["x"] + (x + 0.5) * c["width"] / self.shape[2],
            c["y"] + (y + 0.5) * c["height"] / self.shape[1],
        )

    def key(self, work: Work, key: str, kind: str = "key") -> None:
        self.page.keyboard.press(key)
        work.actions[kind] += 1

    def slice(self) -> int:
        return int(self.page.evaluate("() => annotome.paint.editor.slice('xy')"))

    def go(self, work: Work, z: int) -> None:
        current = self.slice()
        while current != z:
            for _ in range(abs(z - current)):
                self.key(work, "f" if z > current else "d", "slice key")
            current = self.slice()

    def use(self, work: Work, tool: str) -> None:
        if self.tool != tool:
            self.key(work, {"brush": "b", "eraser": "e", "fill": "g", "pick": "p"}[tool])
            self.tool = tool

    def set_radius(self, work: Work, radius: float) -> None:
        """+/- (one voxel a press, 0.5 the least) until the radius is within half a voxel."""
        while radius - self.radius > 0.5 or (self.radius - radius >= 0.5 and self.radius > 0.5):
            self.key(work, "=" if radius > self.radius else "-")
            self.radius = float(self.page.evaluate("() => annotome.paint.editor.radius"))

    def drag(self, work: Work, points: list[tuple[int, int]]) -> None:
        mouse = self.page.mouse
        mouse.move(*self.at(*points[0]))
        mouse.down()
        for y, x in points[1:]:
            mouse.move(*self.at(y, x))
        mouse.up()
        work.actions["stroke"] += 1

    def click(self, work: Work, y: int, x: int, alt: bool = False) -> None:
        mouse, keyboard = self.page.mouse, self.page.keyboard
        if alt:
            keyboard.down("Alt")
        mouse.click(*self.at(y, x))
        if alt:
            keyboard.up("Alt")
        work.actions["click"] += 1

    def object_mask(self, object_id: int) -> Mask:
        flat = self.page.evaluate(
            """(id) => { const d = annotome.paint.editor.volume.data, out = [];
                 for (let i = 0; i < d.length; i++) if (d[i] === id) out.push(i);
                 return out; }""",
            object_id,
        )
        mask = np.zeros(int(np.prod(self.shape)), bool)
        mask[np.asarray(flat, np.int64)] = True
        return mask.reshape(self.shape)

    def volume(self) -> npt.NDArray[np.uint32]:
        data = self.page.evaluate("() => Array.from(annotome.paint.editor.volume.data)")
        return np.asarray(data, np.uint32).reshape(self.shape)

    def proposal(self) -> Mask | None:
        flat = self.page.evaluate(
            """() => { const p = annotome.paint.editor.proposal;
                 return p === null ? null : Array.from(p.indices); }"""
        )
        if flat is None:
            return None
        mask = np.zeros(int(np.prod(self.shape)), bool)
        mask[np.asarray(flat, np.int64)] = True
        return mask.reshape(self.shape)


# --- the three ways of working -----------------------------------------------------------------


def paint_manual(task: Task, truth: Mask, step: int, work: Work) -> None:
    """Key slices outlined and filled, the rest interpolated (V)."""
    task.key(work, "c")
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    keys = list(range(int(zs[0]), int(zs[-1]) + 1, step))
    if keys[-1] != zs[-1]:
        keys.append(int(zs[-1]))
    for z in keys:
        pieces, n = ndimage.label(truth[z])
        if not n:
            continue
        task.go(work, z)
        task.use(work, "brush")
        fills = []
        for k in range(1, n + 1):
            piece = pieces == k
            task.drag(work, thin(outline(piece), 3))
            inner = ndimage.binary_erosion(piece)
            if inner.any():
                depth = ndimage.distance_transform_edt(inner)
                fills.append(np.unravel_index(int(np.argmax(depth)), depth.shape))
        if fills:
            task.use(work, "fill")
            for y, x in fills:
                task.click(work, int(y), int(x))
            task.use(work, "brush")
    task.key(work, "v")


def correct(task: Task, object_id: int, truth: Mask, limit: int, work: Work) -> None:
    """At most ``limit`` strokes while Dice < 0.9, each on the worst slice's largest error."""
    for _ in range(limit):
        found = task.object_mask(object_id)
        if dice(found, truth) >= GOOD_DICE:
            return
        missing, extra = truth & ~found, found & ~truth
        z = int(np.argmax((missing | extra).sum(axis=(1, 2))))
        best: tuple[int, str, Mask] = (0, "brush", missing[z])
        for tool, wrong in (("brush", missing[z]), ("eraser", extra[z])):
            pieces, n = ndimage.label(wrong)
            if n:
                sizes = ndimage.sum_labels(wrong, pieces, range(1, n + 1))
                k = int(np.argmax(sizes))
                if sizes[k] > best[0]:
                    best = (int(sizes[k]), tool, pieces == k + 1)
        if not best[0]:
            return
        radius, line = middle_line(best[2])
        if task.page.evaluate("() => annotome.paint.editor.activeId") != object_id:
            # Another object is active (propose-all accepted others since): pick this one, on
            # the slice nearest the wrong one that shows it.
            shown = np.flatnonzero(found.any(axis=(1, 2)))
            if not len(shown):
                return
            pz = int(shown[np.argmin(np.abs(shown - z))])
            y, x = np.argwhere(found[pz])[len(np.argwhere(found[pz])) // 2]
            task.go(work, pz)
            task.use(work, "pick")
            task.click(work, int(y), int(x))
        task.go(work, z)
        task.use(work, best[1])
        task.set_radius(work, radius)
        task.drag(work, line)


def click_object(task: Task, truth: Mask, limit: int, step: int, work: Work) -> None:
    """Alt+click, Enter, corrections; manual when nothing is proposed. As a person does: on
    the slice shown when the object is well cut there (at least half its largest cross-section),
    at the deepest point of that cross-section; else at the object's deepest voxel, reached with
    slice keys."""
    areas = truth.sum(axis=(1, 2))
    shown = task.slice()
    if areas[shown] >= 0.5 * areas.max():
        depth = ndimage.distance_transform_edt(np.pad(truth[shown], 1))[1:-1, 1:-1]
        y, x = (int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
    else:
        z, y, x = deepest_voxel(truth)
        task.go(work, z)
    task.click(work, y, x, alt=True)
    task.page.wait_for_function(
        """() => annotome.paint.editor.proposal !== null || !document
             .querySelector('[data-assist=status]').textContent.startsWith('Growing')""",
        timeout=WAIT_MS,
    )
    if task.page.evaluate("() => annotome.paint.editor.proposal") is None:
        paint_manual(task, truth, step, work)
        return
    task.key(work, "Enter")
    object_id = int(task.page.evaluate("() => annotome.paint.editor.activeId"))
    correct(task, object_id, truth, limit, work)


def propose_and_correct(
    task: Task, targets: dict[int, Mask], limit: int, step: int, shared: Work
) -> dict[int, Work]:
    works = {t: Work() for t in targets}
    started = time.perf_counter()
    task.page.click("[data-assist=propose]")
    shared.actions["click"] += 1
    task.page.wait_for_function("() => annotome.assist().queue() !== null", timeout=WAIT_MS)
    shared.seconds += time.perf_counter() - started
    accepted: dict[int, int] = {}  # target -> painted id
    total = int(task.page.evaluate("() => annotome.assist().queue().counts.total"))
    for _ in range(total + 1):
        started = time.perf_counter()
        shown = task.proposal()
        if shown is None:
            shared.seconds += time.perf_counter() - started
            break
        best, best_iou = None, 0.0
        for t, truth in targets.items():
            if t in accepted:
                continue
            union = int((shown | truth).sum())
            iou = int((shown & truth).sum()) / union if union else 0.0
            if iou > best_iou:
                best, best_iou = t, iou
        if best is not None and best_iou >= 0.5:
            task.key(works[best], "Enter")
            accepted[best] = int(task.page.evaluate("() => annotome.paint.editor.activeId"))
            works[best].seconds += time.perf_counter() - started
        else:
            task.key(shared, "Escape")
            shared.seconds += time.perf_counter() - started
    for t, object_id in accepted.items():
        started = time.perf_counter()
        correct(task, object_id, targets[t], limit, works[t])
        works[t].seconds += time.perf_counter() - started
    for t, truth in targets.items():
        if t not in accepted:
            started = time.perf_counter()
            click_object(task, truth, limit, step, works[t])
            works[t].seconds += time.perf_counter() - started
    return works


# --- the run -----------------------------------------------------------------------------------


def start_site(workdir: Path, env: dict[str, str]) -> Server:
    """The site and its Celery worker as ``make up`` starts them (``webapp.embedded``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    full_env["CELERY_WORKER_CONCURRENCY"] = "1"
    log_path = workdir / "site.out"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webapp.embedded"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("embedded", port, proc, log_path)
    try:
        wait_for_http(f"{server.url}/", timeout=120, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"the site did not start:\n{server.log()}")
    return server


def box_centres(
    rng: np.random.Generator, shape: list[int], box: list[int], n: int
) -> list[list[int]]:
    lo = np.array(box) // 2
    hi = np.array(shape) - (np.array(box) - np.array(box) // 2)
    return [[int(v) for v in rng.integers(lo, hi + 1)] for _ in range(n)]


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def train_model(env: dict[str, str], preset: str) -> dict[str, Any]:
    """Retrain the demo's painted campaign on the running site's worker (as its Retrain button
    does) and wait with a bar; the run's figures and its training boxes (start, size)."""
    manage(env, "ensure_demo_admin")
    manage(env, "load_demo_campaign", "--if-absent")
    started = time.monotonic()
    code = "import json\n" + TRAIN_CODE % {"preset": preset}
    run = last_json(manage(env, "shell", "-c", code))
    bar = tqdm(total=100, desc=f"retraining ({preset})", unit="%", file=sys.stderr)
    while True:
        code = "import json\n" + RUN_STATE_CODE % {"run": run["run"]}
        state = last_json(manage(env, "shell", "-c", code))
        bar.n = round(100 * float(state["progress"]))
        bar.set_postfix_str(state["stage"] or state["status"])
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(5)
    bar.close()
    if state["status"] != "succeeded" or not state["current"]:
        raise SystemExit(f"the run did not give a current model: {state}")
    return {**state, "seconds": time.monotonic() - started, "boxes": run["boxes"]}


def covered(box: dict[str, Any], training: list[list[list[int]]]) -> float:
    """The share of ``box``'s voxels inside the training boxes (they do not overlap)."""
    inside = 0
    for start, size in training:
        extent = 1
        for a, n, b, m in zip(box["start"], box["size"], start, size, strict=True):
            extent *= max(0, min(a + n, b + m) - max(a, b))
        inside += extent
    return inside / float(np.prod(box["size"]))


@dataclass
class Outcome:
    """What one strategy did on one target."""

    work: Work
    dice: float


def run_strategy(
    context: Any,
    url: str,
    strategy: str,
    assignment: int,
    targets: dict[int, Mask],
    args: argparse.Namespace,
    bar: tqdm,
) -> list[Outcome]:
    page = context.new_page()
    page.goto(f"{url}/annotation/task/{assignment}/")
    page.wait_for_function(PAINT_READY, timeout=WAIT_MS)
    page.wait_for_function("() => annotome.assist() !== null", timeout=WAIT_MS)
    z, y, x = page.evaluate("() => annotome.paint.editor.volume.shape")
    task = Task(page, (int(z), int(y), int(x)))
    shared = Work()
    works: dict[int, Work] = {}
    if strategy.startswith("propose"):
        works = propose_and_correct(task, targets, args.corrections, args.manual_step, shared)
        bar.update(len(targets))
    else:
        started = time.perf_counter()
        if strategy == "manual":
            task.set_radius(shared, 0.5)
        shared.seconds += time.perf_counter() - started
        for t, truth in targets.items():
            work = works[t] = Work()
            started = time.perf_counter()
            if strategy == "manual":
                paint_manual(task, truth, args.manual_step, work)
            else:
                click_object(task, truth, args.corrections, args.manual_step, work)
            work.seconds += time.perf_counter() - started
            bar.update(1)
    painted = task.volume()
    page.close()
    outcomes = []
    n = max(len(targets), 1)
    for t, truth in targets.items():
        ids, counts = np.unique(painted[truth], return_counts=True)
        candidates = [
            int(i) for i, _ in sorted(zip(ids, counts, strict=True), key=lambda p: -p[1]) if i
        ][:3]
        best = max((dice(painted == i, truth) for i in candidates), default=0.0)
        work = works[t]
        for kind, count in shared.actions.items():
            work.actions[kind] += count / n  # type: ignore[assignment]
        work.seconds += shared.seconds / n
        outcomes.append(Outcome(work, best))
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=3)
    parser.add_argument("--box", nargs=3, type=int, default=[64, 64, 64])
    parser.add_argument("--manual-step", type=int, default=4, help="xy slices between key slices")
    parser.add_argument("--corrections", type=int, default=3, help="correction strokes at most")
    parser.add_argument("--shape", nargs=3, type=int, default=[256, 256, 256])
    parser.add_argument("--nuclei", type=int, default=300)
    parser.add_argument(
        "--strategies", help="which, in order (default: all, the model's with --model only)"
    )
    parser.add_argument(
        "--model",
        choices=("tiny", "standard"),
        help="retrain the demo campaign with this preset, then play click and propose with it",
    )
    parser.add_argument("--reuse", type=Path, help="var directory to keep and reuse across runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-assist-"))
    var_dir = (args.reuse or tmp / "var").resolve()
    site: Server | None = None
    default = STRATEGIES if args.model else STRATEGIES[:3]
    chosen = [s for s in (args.strategies or ",".join(default)).split(",") if s]
    if not chosen or set(chosen) - set(STRATEGIES):
        parser.error(f"--strategies: a comma-separated list of {', '.join(STRATEGIES)}")
    if set(chosen) & set(MODEL_STRATEGIES) and not args.model:
        parser.error(f"{', '.join(MODEL_STRATEGIES)} need --model")
    trained: dict[str, Any] | None = None
    results: dict[str, list[Outcome]] = {s: [] for s in chosen}
    try:
        env = site_env(var_dir)
        prepare_var(var_dir, env, args.shape, args.nuclei)
        rng = np.random.default_rng(SEED)
        centres = box_centres(rng, args.shape, args.box, args.boxes)
        code = SETUP_CODE % {
            "strategies": STRATEGIES,
            "password": PASSWORD,
            "slug": DEMO_SLUG,
            "centres": centres,
            "box": args.box,
        }
        boxes = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
        truth_volume = make_nuclei_volume(tuple(args.shape), args.nuclei, SEED, VOXEL_NM)[1]
        min_voxels = int(np.pi / 6 * (MIN_DIAMETER_UM * 1000 / VOXEL_NM) ** 3)
        per_box: list[dict[int, Mask]] = []
        for b in boxes:
            region = tuple(slice(s, s + n) for s, n in zip(b["start"], b["size"], strict=True))
            block = truth_volume[region]
            ids, counts = np.unique(block[block > 0], return_counts=True)
            kept = {int(i): block == i for i, c in zip(ids, counts, strict=True) if c >= min_voxels}
            # Worked through in slice order, as a person scrolls through the box.
            order = sorted(kept, key=lambda i: deepest_voxel(kept[i]))
            per_box.append({i: kept[i] for i in order})
        n_targets = sum(len(t) for t in per_box)
        site = start_site(tmp / "site", env)
        print(
            f"demo {'x'.join(map(str, args.shape))}, {len(boxes)} boxes of "
            f"{'x'.join(map(str, args.box))} voxels, {n_targets} targets; site {site.url}",
            flush=True,
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            bar = tqdm(total=n_targets * len(chosen), unit="object", file=sys.stderr)
            for strategy in chosen:
                if strategy in MODEL_STRATEGIES and trained is None:
                    trained = train_model(env, args.model)
                    print_training(trained, boxes)
                context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                page = context.new_page()
                page.goto(f"{site.url}/accounts/login/")
                page.fill("#id_username", f"bench-{strategy}")
                page.fill("#id_password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_load_state()
                page.close()
                for b, targets in zip(boxes, per_box, strict=True):
                    bar.set_description(strategy)
                    results[strategy] += run_strategy(
                        context, site.url, strategy, b["assignments"][strategy], targets, args,
                        bar,
                    )  # fmt: skip
                context.close()
            bar.close()
            browser.close()
    finally:
        if site is not None:
            site.stop()
        if args.keep:
            print(f"kept {tmp}")
        elif args.reuse is None or tmp in var_dir.parents:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, load)
    if trained is not None:
        print_training(trained, boxes)


def print_training(trained: dict[str, Any], boxes: list[dict[str, Any]]) -> None:
    f1 = "-" if trained["f1"] is None else f"{trained['f1']:.3f}"
    shares = ", ".join(f"{covered(b, trained['boxes']):.0%}" for b in boxes)
    print(
        f"\nretrained: model v{trained['model']} in {trained['seconds']:.0f} s, held-out F1 {f1};"
        f" bench boxes inside its {len(trained['boxes'])} training boxes: {shares}",
        flush=True,
    )


def report(results: dict[str, list[Outcome]], load: float) -> None:
    print(f"\nload average at the start: {load:.1f}")
    header = (
        f"{'':22}{'Dice>=0.9':>11}{'actions/good':>14}{'mean':>7}{'median':>8}{'<=3':>6}"
        f"{'no slice keys':>15}{'s/good':>8}{'s median':>10}{'vs manual':>11}"
    )
    print("per object whose Dice with the truth is >= 0.9 (actions and wall seconds):")
    print(header)
    base: tuple[float, float] | None = None
    for strategy in results:
        rows = results[strategy]
        good = [o for o in rows if o.dice >= GOOD_DICE]
        n_good = max(len(good), 1)
        all_actions = sum(o.work.total for o in rows)
        all_seconds = sum(o.work.seconds for o in rows)
        own = [o.work.total for o in good] or [float("nan")]
        own_s = [o.work.seconds for o in good] or [float("nan")]
        no_nav = sum(o.work.total - o.work.actions["slice key"] for o in rows) / n_good
        few = np.mean([a <= 3 for a in own]) if good else 0.0
        per_good = all_actions / n_good
        s_good = all_seconds / n_good
        if base is None:
            base = (per_good, s_good)
        print(
            f"{NAMES[strategy]:22}{f'{len(good)}/{len(rows)}':>11}{per_good:14.2f}"
            f"{statistics.mean(own):7.2f}{statistics.median(own):8.1f}{few:6.0%}{no_nav:15.2f}"
            f"{s_good:8.2f}{statistics.median(own_s):10.2f}"
            f"{f'{base[0] / per_good:.1f}x':>11}{f'{base[1] / s_good:.1f}x':>9}"
        )
        kinds: Counter[str] = Counter()
        for o in rows:
            kinds.update(o.work.actions)
        dices = [o.dice for o in rows]
        print(
            f"{'':22}Dice median {statistics.median(dices):.3f}, min {min(dices):.3f}; actions: "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(kinds.items()))
        )
    print(
        "(actions/good: all the strategy's actions over the objects reaching Dice >= 0.9; mean,"
        " median, '<=3' (share done in 3 or fewer) over those objects, shared actions spread"
        " evenly; 'vs manual', 's vs': manual's actions/good and s/good over this one's;"
        " seconds are the scripted run's wall time, a person adds time to look and decide;"
        " goal: <= 3 actions per object with assistance)"
    )


if __name__ == "__main__":
    main()
