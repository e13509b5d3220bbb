"""Viewer open time: real Chromium on the demo dataset, our site vs. plain nginx, same run.

    .venv/bin/python bench/viewer.py [--loads 5] [--targets site,nginx] [--reuse DIR] [--keep]
                                     [--shape 256 256 256] [--nuclei 300] [--details]

One run prepares a temporary var directory the way ``make up`` does (``manage.py migrate``,
``collectstatic``, ``load_demo``: 256^3 synthetic nuclei, ~300 objects, image + labels + meshes),
starts the site as ``make up`` starts it (``webapp.embedded.web_command``: gunicorn with
``webapp/gunicorn_conf.py``, whatever worker class that names), and a plain nginx serving the same
files statically: the Neuroglancer client of the wheel, the dataset's files, and a static parent
page that restores the same viewer state (the one the site's page embeds, its URLs pointed at
nginx). Each load is cold: a fresh Chromium profile (Debian ``/usr/bin/chromium``, the WebGL flags
of tests/browser/conftest.py). Loads of the two targets are interleaved.

Time to ready is measured in the page, from navigation start (``performance.now()``) until every
panel is drawn: the iframe's ``viewer.isReady()`` with every layer of the state created and every
data source loaded (``loadState`` set, no error), polled each animation frame. Requests and bytes
(body + headers as received) are counted by Playwright for the page and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.serving.nginx_harness import (  # noqa: E402
    Server,
    free_port,
    start_nginx,
    wait_for_http,
)
from webapp.embedded import web_command  # noqa: E402

DEMO_SLUG = "demo-nuclei"
NEUROGLANCER_PATH = "/neuroglancer/v/annotome/"
READY_TIMEOUT_MS = 120_000
VIEWPORT = {"width": 1280, "height": 800}

# Evaluated in the top page every animation frame: the time (ms since navigation start) at which
# the embedded viewer has every layer of the state, every data source loaded, and isReady().
READY_JS = """
(nLayers) => {
  const frame = document.getElementById('neuroglancer');
  const viewer = frame && frame.contentWindow && frame.contentWindow.viewer;
  if (!viewer) return false;
  window.__benchViewerAt = window.__benchViewerAt || performance.now();
  const managed = viewer.layerManager.managedLayers;
  if (managed.length < nLayers) return false;
  for (const m of managed) {
    if (!m.layer) return false;
    const sources = m.layer.dataSources || [];
    if (!sources.length) return false;
    for (const s of sources) {
      if (s.loadState === undefined) return false;
      if (s.loadState.error) return 'error: ' + m.name + ': ' + s.loadState.error.message;
    }
  }
  if (!viewer.isReady()) return false;
  return performance.now();
}
"""

# After ready: what the 3D panel holds (mesh manifests and fragments in GPU memory).
MESH_STATS_JS = """
() => {
  const viewer = document.getElementById('neuroglancer').contentWindow.viewer;
  const out = {visibleSegments: 0, meshSources: 0, manifests: 0, fragmentsOnGpu: 0,
               viewerAt: window.__benchViewerAt || null};
  for (const m of viewer.layerManager.managedLayers) {
    const layer = m.layer;
    const group = layer.displayState && layer.displayState.segmentationGroupState;
    if (!group) continue;
    out.visibleSegments += group.value.visibleSegments.size;
    for (const r of layer.renderLayers) {
      const source = r.source;
      if (!source || !source.fragmentSource) continue;
      out.meshSources += 1;
      out.manifests += source.chunks.size;
      for (const c of source.fragmentSource.chunks.values()) {
        if (c.state === 0) out.fragmentsOnGpu += 1;  // ChunkState.GPU_MEMORY
      }
    }
  }
  return out;
}
"""

BASELINE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Neuroglancer from nginx</title>
<style>html,body{margin:0;height:100%%}iframe{border:0;width:100%%;height:calc(100%% - 60px);
margin-top:60px}</style></head>
<body><iframe id="neuroglancer" src="%(client)s"></iframe>
<script>
  const state = %(state)s;
  const frame = document.getElementById('neuroglancer');
  (function poll() {
    const viewer = frame.contentWindow && frame.contentWindow.viewer;
    if (viewer) viewer.state.restoreState(state); else setTimeout(poll, 50);
  })();
</script></body></html>
"""


@dataclass
class Load:
    """One cold load of one target."""

    ready_ms: float
    viewer_ms: float
    requests: int
    bytes: int
    kinds: Counter[str] = field(default_factory=Counter)
    kind_bytes: Counter[str] = field(default_factory=Counter)
    waits_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    last_response_ms: float = 0.0
    mesh: dict[str, Any] = field(default_factory=dict)


def request_kind(url: str) -> str:
    """A short name for what a request fetched (for the per-kind counts)."""
    path = urllib.parse.urlparse(url).path
    if "/neuroglancer/" in path:
        return "neuroglancer stub" if re.search(r"/(events|state|action)/", path) else "client"
    if "/data/" not in path:
        return "page"
    name = path.rsplit("/", 1)[-1]
    if "/meshes/" in path:
        if name == "info" or "segment_properties" in path:
            return "mesh info"
        if re.fullmatch(r"[0-9]+:[0-9]+", name):
            return "mesh manifest"
        if name.endswith(".shard"):
            return "mesh shard"
        return "mesh fragment"
    if name in ("zarr.json", ".zattrs", ".zarray", ".zgroup", "info"):
        return "zarr metadata"
    return "zarr chunk"


def run(cmd: list[str], env: dict[str, str], tree: Path = REPO_ROOT) -> None:
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:])} failed:\n{done.stdout}\n{done.stderr}")


def site_env(var_dir: Path) -> dict[str, str]:
    """The environment ``make up`` gives the site, with everything under ``var_dir``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "webapp.settings.dev"),
        "ANNOTOME_VAR_DIR": str(var_dir),
        "GUNICORN_LOGLEVEL": "warning",
    }
    for name in ("DATABASE_URL", "ANNOTOME_DATA_ROOT", "DJANGO_STATIC_ROOT", "CELERY_BROKER_URL"):
        env.pop(name, None)  # everything lives under the bench's var directory
    return env


def prepare_var(
    var_dir: Path, env: dict[str, str], shape: list[int], nuclei: int, tree: Path = REPO_ROOT
) -> None:
    """What ``make up`` does before serving, into ``var_dir`` (demo built once, then reused)."""
    python = sys.executable
    var_dir.mkdir(parents=True, exist_ok=True)
    run([python, "manage.py", "migrate", "--noinput", "-v0"], env, tree)
    run([python, "manage.py", "collectstatic", "--noinput", "-v0"], env, tree)
    if not (var_dir / "data" / "datasets" / DEMO_SLUG).is_dir():
        print(f"building the demo dataset in {var_dir} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        run(
            [python, "manage.py", "load_demo", "--if-absent", "--shape", *map(str, shape),
             "--nuclei", str(nuclei)],
            env,
            tree,
        )  # fmt: skip
        print(f"  demo built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def export_tree(commit: str, target: Path) -> Path:
    """The project's files at ``commit`` (``git archive``), to run that version side by side."""
    target.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {commit} failed")
    return target


def tree_web_command(tree: Path, port: int) -> list[str]:
    """``webapp.embedded.web_command`` of the source tree ``tree`` (this one or an export)."""
    if tree == REPO_ROOT:
        return web_command("127.0.0.1", port)
    code = (
        "import json, sys; sys.path.insert(0, '.'); from webapp.embedded import web_command; "
        f"print(json.dumps(web_command('127.0.0.1', {port})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: no webapp.embedded.web_command:\n{out.stderr}")
    return [str(a) for a in json.loads(out.stdout)]


def start_site(workdir: Path, env: dict[str, str], tree: Path = REPO_ROOT) -> Server:
    """The site exactly as ``make up`` starts its web server (``webapp.embedded``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    log_path = workdir / "gunicorn.out"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            tree_web_command(tree, port),
            cwd=tree,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("gunicorn", port, proc, log_path)
    try:
        wait_for_http(f"{server.url}/", timeout=120, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"the site did not start:\n{server.log()}")
    return server


def site_state(site: Server) -> dict[str, Any]:
    """The viewer state the site's page embeds for the demo."""
    with urllib.request.urlopen(f"{site.url}/datasets/{DEMO_SLUG}/", timeout=60) as response:
        html = response.read().decode()
    pattern = r'<script id="viewer-state" type="application/json">(.*?)</script>'
    match = re.search(pattern, html, re.S)
    if match is None:
        raise RuntimeError("the viewer page holds no viewer-state script")
    return json.loads(match.group(1))


def start_baseline_nginx(
    workdir: Path, data_root: Path, client_dir: Path, state: dict[str, Any], site_url: str
) -> Server:
    """Plain nginx: static files only (the client, the dataset, a page restoring ``state``)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    text = json.dumps(state).replace(site_url.rstrip("/") + "/data/", origin + "/data/")
    pages = workdir / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    (pages / "index.html").write_text(
        BASELINE_PAGE % {"client": NEUROGLANCER_PATH, "state": text.replace("</", "<\\/")}
    )
    # The Python-integration client wants an event stream (one static answer that asks it to
    # retry in an hour) and 200 to its state POSTs; everything else is a file.
    (pages / "events").write_text("retry: 3600000\n: static\n\n")
    snippet = f"""    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 10000;
        sendfile on;
        tcp_nopush on;
        location = / {{ root {pages}; try_files /index.html =404; }}
        location ^~ /neuroglancer/v/annotome/ {{ alias {client_dir}/; }}
        location ^~ /neuroglancer/events/ {{
            default_type text/event-stream; alias {pages}/events;
        }}
        location ^~ /neuroglancer/ {{
            default_type application/json; return 200 '{{"g":"0"}}';
        }}
        location ^~ /data/ {{ alias {data_root}/datasets/; }}
    }}"""
    return start_nginx(workdir, snippet, port, 2)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def _browser_pids(profile: str) -> set[int]:
    """The Chromium started on ``profile`` and all its descendants."""
    parents: dict[int, int] = {}
    root: int | None = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        if f"--user-data-dir={profile}".encode() in cmdline and b"--type=" not in cmdline:
            root = int(entry)
    if root is None:
        return set()
    found = {root}
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def _cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_browser_idle(profile: str, timeout_s: float = 15.0) -> float:
    """Wait until the fresh browser has finished starting up (its own pages: headless Chromium
    156 loads a WebUI omnibox popup of ~400 chrome:// resources for several seconds after
    launch), as a person's browser has before they open a link. Returns the seconds waited."""
    started = time.monotonic()
    window = 0.3
    previous = _cpu_seconds(_browser_pids(profile))
    while time.monotonic() - started < timeout_s:
        time.sleep(window)
        current = _cpu_seconds(_browser_pids(profile))
        if current - previous < 0.05 * window:  # under 5 % of one core
            break
        previous = current
    return time.monotonic() - started


def cold_load(playwright: Any, url: str, n_layers: int) -> Load:
    """Open ``url`` in a fresh Chromium profile and wait until the viewer is ready."""
    profile = tempfile.mkdtemp(prefix="annotome-bench-chromium-")
    context = playwright.chromium.launch_persistent_context(
        user_data_dir=profile,
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport=VIEWPORT,
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        wait_browser_idle(profile)
        finished: list[Any] = []
        context.on("requestfinished", lambda request: finished.append(request))
        page.goto(url, wait_until="commit")
        handle = page.wait_for_function(
            READY_JS, arg=n_layers, polling="raf", timeout=READY_TIMEOUT_MS
        )
        ready = handle.json_value()
        if isinstance(ready, str):
            raise RuntimeError(f"{url}: {ready}")
        mesh = page.evaluate(MESH_STATS_JS)
        origin = page.evaluate("() => performance.timeOrigin")
        load = Load(
            ready_ms=float(ready),
            viewer_ms=float(mesh.pop("viewerAt") or 0),
            requests=0,
            bytes=0,
            mesh=mesh,
        )
        for request in list(finished):
            timing = request.timing
            if timing["startTime"] - origin > ready:
                continue  # after ready (the state POSTs, keep-alives)
            sizes = request.sizes()
            size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
            kind = request_kind(request.url)
            load.requests += 1
            load.bytes += size
            load.kinds[kind] += 1
            load.kind_bytes[kind] += size
            if timing["requestStart"] >= 0:
                load.waits_ms.append(timing["requestStart"])
                load.server_ms.append(timing["responseStart"] - timing["requestStart"])
            if timing["responseEnd"] >= 0:
                load.last_response_ms = max(
                    load.last_response_ms, timing["startTime"] - origin + timing["responseEnd"]
                )
        return load
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 5 loads is the slowest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summarise(name: str, loads: list[Load]) -> dict[str, float]:
    ready = [x.ready_ms for x in loads]
    return {
        "median_s": statistics.median(ready) / 1000,
        "p95_s": percentile(ready, 95) / 1000,
        "requests": statistics.median([x.requests for x in loads]),
        "mb": statistics.median([x.bytes for x in loads]) / 1e6,
    }


def print_report(results: dict[str, list[Load]], details: bool) -> None:
    summaries = {name: summarise(name, loads) for name, loads in results.items()}
    n = len(next(iter(results.values())))
    print(f"\ncold loads of /datasets/{DEMO_SLUG}/, {n} per target, interleaved; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'target':<12}{'median s':>10}{'p95 s':>8}{'requests':>10}{'MB':>8}   all loads (s)")
    for name, s in summaries.items():
        every = " ".join(f"{x.ready_ms / 1000:.2f}" for x in results[name])
        print(
            f"{name:<12}{s['median_s']:>10.2f}{s['p95_s']:>8.2f}{s['requests']:>10.0f}"
            f"{s['mb']:>8.2f}   {every}"
        )
    for other in summaries:
        if other != "site" and "site" in summaries:
            a, b = summaries["site"], summaries[other]
            print(
                f"site / {other}: time {a['median_s'] / b['median_s']:.2f}x (p95 "
                f"{a['p95_s'] / b['p95_s']:.2f}x), requests {a['requests'] / b['requests']:.2f}x,"
                f" bytes {a['mb'] / b['mb']:.2f}x"
            )
    print("goal: site median < 3 s")
    for name, loads in results.items():
        last = loads[len(loads) // 2]
        mesh = last.mesh
        print(
            f"\n{name}: viewer object after {statistics.median(x.viewer_ms for x in loads):.0f} ms;"
            f" meshes: {mesh.get('visibleSegments')} visible segments, {mesh.get('manifests')}"
            f" manifests, {mesh.get('fragmentsOnGpu')} fragments on the GPU"
        )
        if not details:
            continue
        print(f"  one load ({last.ready_ms:.0f} ms to ready, last response at "
              f"{last.last_response_ms:.0f} ms):")  # fmt: skip
        for kind, count in last.kinds.most_common():
            print(f"    {kind:<16}{count:>5} requests {last.kind_bytes[kind] / 1e3:>9.1f} KB")
        if last.waits_ms:
            print(
                f"    queued before sending: median {statistics.median(last.waits_ms):.0f} ms,"
                f" max {max(last.waits_ms):.0f} ms; server time to first byte: median"
                f" {statistics.median(last.server_ms):.1f} ms,"
                f" p95 {percentile(last.server_ms, 95):.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5, help="cold loads per target")
    parser.add_argument(
        "--targets", default="site,nginx", help="comma-separated: site, nginx (default both)"
    )
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also run the site of COMMIT (git archive) on its own demo, as target 'before'",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:K=V,K=V",
        help="also run the site with these environment settings, as target 'site-LABEL' "
        "(e.g. none:ANNOTOME_VIEWER_DEFAULT_SEGMENTS=0)",
    )
    parser.add_argument("--reuse", type=Path, help="var directory to keep and reuse across runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--shape", nargs=3, type=int, default=[256, 256, 256])
    parser.add_argument("--nuclei", type=int, default=300)
    parser.add_argument("--details", action="store_true", help="requests by kind, queueing")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    if set(targets) - {"site", "nginx"} or not targets:
        raise SystemExit("--targets takes site and/or nginx")
    variants: dict[str, dict[str, str]] = {}
    for spec in args.variant:
        label, _, pairs = spec.partition(":")
        try:
            variants[f"site-{label}"] = dict(p.split("=", 1) for p in pairs.split(",") if p)
        except ValueError:
            raise SystemExit(f"--variant {spec!r}: expected LABEL:K=V,K=V") from None
    targets.extend(variants)
    if args.before:
        targets.append("before")

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-viewer-"))
    var_dir = (args.reuse or tmp / "var").resolve()
    servers: list[Server] = []
    try:
        env = site_env(var_dir)
        prepare_var(var_dir, env, args.shape, args.nuclei)
        site = start_site(tmp / "site", env)
        servers.append(site)
        state = site_state(site)
        urls = {"site": f"{site.url}/datasets/{DEMO_SLUG}/"}
        if "nginx" in targets:
            from webapp.viewer.neuroglancer_client import client_dir

            nginx = start_baseline_nginx(
                tmp / "nginx", var_dir / "data", client_dir(), state, site.url
            )
            servers.append(nginx)
            urls["nginx"] = f"{nginx.url}/"
        for name, extra in variants.items():
            other = start_site(tmp / name, {**env, **extra})
            servers.append(other)
            urls[name] = f"{other.url}/datasets/{DEMO_SLUG}/"
        if args.before:
            tree = export_tree(args.before, tmp / "before-src")
            before_var = var_dir.with_name(var_dir.name + "-before") if args.reuse else tmp / "vb"
            before_env = site_env(before_var.resolve())
            prepare_var(before_var.resolve(), before_env, args.shape, args.nuclei, tree)
            before = start_site(tmp / "before", before_env, tree)
            servers.append(before)
            urls["before"] = f"{before.url}/datasets/{DEMO_SLUG}/"
        n_layers = len(state["layers"])
        results: dict[str, list[Load]] = {t: [] for t in targets}
        with chromium() as playwright:
            for t in targets:  # one untimed load each: server workers and disk caches warm
                cold_load(playwright, urls[t], n_layers)
            for index in range(args.loads):
                for t in targets:
                    load = cold_load(playwright, urls[t], n_layers)
                    results[t].append(load)
                    print(
                        f"  load {index + 1} {t}: {load.ready_ms / 1000:.2f} s, "
                        f"{load.requests} requests, {load.bytes / 1e6:.2f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
        print_report(results, args.details)
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
