"""Chunk serving benchmark: plain nginx (the limit) vs our production path vs our embedded server.

One command, one run, the same files: N synthetic 64^3 chunks (~218 KB each, like zstd-compressed
uint8 chunks of the demo) in a temporary data root with a public and a private dataset, a
temporary SQLite database (migrated here), and wrk at 32 connections rotating over every chunk.

    .venv/bin/python bench/serve.py [--duration 5] [--rounds 3] [--connections 32]
                                    [--chunks 512] [--workers N] [--compare-workers]

Targets:
  nginx static       nginx serving the chunk files, no access check (the limit)
  production/cookie  nginx + cached auth_request to gunicorn (private dataset, session cookie)
  production/share   the same through a share link path /s/<token>/data/...
  embedded/public    gunicorn (webapp/gunicorn_conf.py) + Django streaming the files, anonymous
  embedded/cookie    the same, private dataset with a session cookie
  embedded-sync/...  (--compare-workers) the embedded server under sync workers,
  embedded-gthread-nosendfile/...  without the kernel's sendfile (Python writes the blocks),
  embedded-gthread-16/...       16 threads per worker instead of 8,
  embedded-django-routing/...   data URLs through Django's middleware and URL resolver
Goals on a 2-core machine: production >= 0.8 of nginx, embedded >= 0.14 with p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.serving.nginx_harness import (  # noqa: E402
    Server,
    free_port,
    render_nginx_conf,
    start_gunicorn,
    start_nginx,
    start_static_nginx,
)

CHUNK_BYTES = 218 * 1024
GRID = 8  # chunks per axis; N chunks use the first N positions of the 8x8x8.. grid
PUBLIC, PRIVATE = "bench-public", "bench-private"
STORE = "image.ome.zarr"

WRK_LUA = """
local paths = {%(paths)s}
local counter = 0
function setup(thread)
  thread:set("offset", math.random(#paths))
end
function request()
  counter = counter + 1
  return wrk.format("GET", "%(prefix)s" .. paths[((counter + offset) %% #paths) + 1])
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"status_errors": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def chunk_paths(count: int) -> list[str]:
    paths = []
    for index in range(count):
        z, rest = divmod(index, GRID * GRID)
        y, x = divmod(rest, GRID)
        paths.append(f"{STORE}/s0/c/{z}/{y}/{x}")
    return paths


def write_chunks(data_root: Path, count: int) -> list[str]:
    """Chunk files that compress like image data would not: random bytes, written once."""
    public = data_root / "datasets" / PUBLIC
    paths = chunk_paths(count)
    seed = os.urandom(CHUNK_BYTES)
    for index, rel in enumerate(paths):
        target = public / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(index.to_bytes(4, "little") + seed[4:])
    (public / STORE / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    # The private dataset registers the same store in place (a symlink), as imports may.
    private = data_root / "datasets" / PRIVATE
    private.mkdir(parents=True)
    (private / STORE).symlink_to(public / STORE, target_is_directory=True)
    return paths


def setup_site(env: dict[str, str]) -> tuple[str, str]:
    """Migrate the temporary database and create the datasets; return (session id, token)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from webapp.datasets.models import Dataset, ShareLink, Visibility

    call_command("migrate", verbosity=0, interactive=False)
    owner = get_user_model().objects.create_user("bench-owner")
    Dataset.objects.create(name="Public", slug=PUBLIC, owner=owner, visibility=Visibility.PUBLIC)
    private = Dataset.objects.create(
        name="Private", slug=PRIVATE, owner=owner, visibility=Visibility.PRIVATE
    )
    link = ShareLink.objects.create(dataset=private, created_by=owner)
    client = Client()
    client.force_login(owner)
    return client.cookies[settings.SESSION_COOKIE_NAME].value, link.token


def check(url: str, expected: bytes, headers: dict[str, str], served_by: str | None) -> None:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        if body != expected:
            raise SystemExit(f"{url}: wrong body ({len(body)} bytes)")
        if served_by and response.headers.get("X-Served-By") != served_by:
            raise SystemExit(f"{url}: not served by {served_by}")


def run_wrk(
    name: str,
    base: str,
    prefix: str,
    paths: list[str],
    workdir: Path,
    duration: int,
    connections: int,
    headers: dict[str, str],
) -> Result:
    script = workdir / f"{name.replace('/', '-')}.lua"
    script.write_text(WRK_LUA % {"paths": ",".join(json.dumps(p) for p in paths), "prefix": prefix})
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    common = ["wrk", "-t2", f"-c{connections}", "-s", str(script), *header_args, base]
    subprocess.run([*common[:1], "-d2s", *common[1:]], capture_output=True, check=True)  # warm
    out = subprocess.run(
        [*common[:1], f"-d{duration}s", *common[1:]], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    stats = json.loads(line.removeprefix("WRKJSON "))
    return Result(
        name,
        stats["requests"] / (stats["duration_us"] / 1e6),
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        stats["status_errors"] + stats["socket_errors"],
    )


def print_table(results: list[Result], connections: int, chunks: int, rounds: int) -> None:
    base = results[0].rps
    print(
        f"\n{chunks} chunks of {CHUNK_BYTES // 1024} KB, wrk -t2 -c{connections},"
        f" median of {rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'target':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x nginx':>9}{'errors':>8}")
    for r in results:
        print(
            f"{r.name:<26}{r.rps:>10.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
            f"{r.rps / base:>9.2f}{r.errors:>8}"
        )
    print("goals: production >= 0.80 x nginx; embedded >= 0.14 x nginx with p99 < 50 ms")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per target")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--workers", type=int, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument(
        "--variants",
        type=lambda text: [v for v in text.split(",") if v],
        help="with --compare-workers: only these variants (comma-separated)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="LABEL:K=V,K=V",
        help="with --compare-workers: one more server variant with these environment settings",
    )
    parser.add_argument(
        "--compare-workers",
        action="store_true",
        help="also run the embedded server under other worker settings (sync, no sendfile, ...)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="annotome-bench-"))
    servers: list[Server] = []
    try:
        data_root = tmp / "data"
        env = {
            "DJANGO_SETTINGS_MODULE": "webapp.settings.production",
            "DJANGO_SECRET_KEY": "bench-" + os.urandom(16).hex(),
            "DJANGO_SECURE_COOKIES": "0",
            "DJANGO_LOG_LEVEL": "WARNING",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "ANNOTOME_VAR_DIR": str(tmp / "var"),
            "ANNOTOME_DATA_ROOT": str(data_root),
            "DJANGO_STATIC_ROOT": str(tmp / "static"),
            "GUNICORN_LOGLEVEL": "warning",
        }
        if args.workers:
            env["WEB_CONCURRENCY"] = str(args.workers)
        paths = write_chunks(data_root, args.chunks)
        (tmp / "static").mkdir()
        session, token = setup_site(env)
        cookie = {"Cookie": f"sessionid={session}"}
        sample = (data_root / "datasets" / PUBLIC / paths[0]).read_bytes()

        static = start_static_nginx(tmp / "nginx-static", data_root / "datasets", free_port(), 2)
        servers.append(static)
        web = start_gunicorn(tmp / "gunicorn", free_port(), env)
        servers.append(web)
        prod_port = free_port()
        snippet = render_nginx_conf(
            listen=f"127.0.0.1:{prod_port}",
            upstream=f"127.0.0.1:{web.port}",
            data_root=str(data_root),
            static_root=str(tmp / "static"),
            auth_cache_path=str(tmp / "nginx-auth-cache"),
            auth_cache_seconds=10,
        )
        prod = start_nginx(tmp / "nginx-prod", snippet, prod_port, 2)
        servers.append(prod)

        targets = [
            ("nginx static", static.url, f"/{PUBLIC}/", {}, None),
            ("production/cookie", prod.url, f"/data/{PRIVATE}/", cookie, "nginx"),
            ("production/share", prod.url, f"/s/{token}/data/{PRIVATE}/", {}, "nginx"),
            ("embedded/public", web.url, f"/data/{PUBLIC}/", {}, None),
            ("embedded/cookie", web.url, f"/data/{PRIVATE}/", cookie, None),
        ]
        if args.compare_workers:
            variants = {
                "sync": {"GUNICORN_WORKER_CLASS": "sync"},
                "gthread-nosendfile": {"GUNICORN_SENDFILE": "0"},
                "gthread-16": {"GUNICORN_THREADS": "16"},
                "django-routing": {"ANNOTOME_DATA_FAST_PATH": "0"},
                "gthread+reuseport": {"GUNICORN_REUSE_PORT": "1"},
                "gthread-1worker": {"WEB_CONCURRENCY": "1"},
            }
            for spec in args.variant or []:
                label, _, pairs = spec.partition(":")
                variants[label] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
            if args.variants:
                unknown = set(args.variants) - set(variants)
                if unknown:
                    raise SystemExit(
                        f"unknown variants {sorted(unknown)}; known: {sorted(variants)}"
                    )
                variants = {k: v for k, v in variants.items() if k in args.variants}
            for label, extra in variants.items():
                other = start_gunicorn(tmp / f"gunicorn-{label}", free_port(), {**env, **extra})
                servers.append(other)
                targets.append(
                    (f"embedded-{label}/public", other.url, f"/data/{PUBLIC}/", {}, None)
                )
                targets.append(
                    (f"embedded-{label}/cookie", other.url, f"/data/{PRIVATE}/", cookie, None)
                )

        runs: dict[str, list[Result]] = {name: [] for name, *_ in targets}
        for name, base, prefix, headers, served_by in targets:
            try:
                check(base + prefix + paths[0], sample, headers, served_by)
            except OSError as error:
                raise SystemExit(f"{name}: {base + prefix + paths[0]} failed: {error}")
        for round_index in range(args.rounds):
            for name, base, prefix, headers, _ in targets:
                result = run_wrk(
                    name, base, prefix, paths, tmp, args.duration, args.connections, headers
                )
                runs[name].append(result)
                print(
                    f"  round {round_index + 1} {name}: {result.rps:.0f} req/s,"
                    f" p99 {result.p99_ms:.1f} ms",
                    file=sys.stderr,
                )
        results = [
            Result(
                name,
                median([r.rps for r in rs]),
                median([r.p50_ms for r in rs]),
                median([r.p99_ms for r in rs]),
                sum(r.errors for r in rs),
            )
            for name, rs in runs.items()
        ]
        print_table(results, args.connections, args.chunks, args.rounds)
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
