"""The site as ``make up`` runs it, browsed as a new user would, in every order of use.

``make up`` itself starts the site (gunicorn with ``webapp/gunicorn_conf.py`` and its worker
class, a real Celery worker, the demo dataset). Chromium then opens the front page (every image
must load), logs in through the form, opens the viewer (Neuroglancer draws the demo, and no
request holds a server connection open), uploads a zlib-compressed TIFF through the import page,
and the API registers an OME-Zarr in place and imports an uncompressed TIFF, a ``.npy`` and a
zipped OME-Zarr, then edits a dataset. Finally every page, API endpoint and data URL is requested
several times, anonymously, with the session and with a token: no answer may be a 5xx, and the
server's log must hold no traceback. Runs on the embedded defaults (SQLite, file-system broker)
and, where they answer (always in CI), on PostgreSQL and Redis.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tifffile
from PIL import Image
from site_harness import MakeUpSite, make_up_site, postgres_answers, wait_for

from pipeline.importers import convert_to_ome_zarr
from pipeline.synthetic import make_nuclei_volume

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

READY_MS = 90_000
JOB_TIMEOUT_S = 120
ROUNDS = 2  # every URL twice per caller: a failure after the first answer (a cache, a pool) shows


def _variants() -> list[str]:
    return ["embedded", "postgresql-redis"] if postgres_answers() else ["embedded"]


@pytest.fixture(params=_variants())
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeUpSite]:
    with make_up_site(tmp_path, on_postgres=request.param == "postgresql-redis") as runner:
        yield runner


# ---------------------------------------------------------------------------------------------
# Inputs a user brings
# ---------------------------------------------------------------------------------------------


def _inputs(tmp: Path) -> dict[str, Path]:
    image, labels = make_nuclei_volume((40, 48, 48), 6, 5, 200.0)
    paths = {
        "compressed_tif": tmp / "compressed-nuclei.tif",
        "plain_tif": tmp / "plain-nuclei.tif",
        "npy": tmp / "nuclei.npy",
        "zarr_dir": tmp / "registered",
        "zarr_zip": tmp / "zipped.ome.zarr.zip",
    }
    tifffile.imwrite(paths["compressed_tif"], image, compression="zlib")
    tifffile.imwrite(paths["plain_tif"], image)
    np.save(paths["npy"], image)
    np.save(tmp / "labels.npy", labels)
    convert_to_ome_zarr(
        paths["npy"], paths["zarr_dir"], voxel_size=(200.0, 200.0, 200.0), unit="nanometer",
        labels={"nuclei": tmp / "labels.npy"},
    )  # fmt: skip
    store = paths["zarr_dir"] / "image.ome.zarr"
    with zipfile.ZipFile(paths["zarr_zip"], "w") as archive:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                archive.write(file, Path("image.ome.zarr") / file.relative_to(store))
    return paths


# ---------------------------------------------------------------------------------------------
# Browser steps
# ---------------------------------------------------------------------------------------------


def _watch(page: Any, bad: list[str], requested: list[str]) -> None:
    def on_response(response: Any) -> None:
        if response.status >= 500:
            bad.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.on("request", lambda r: requested.append(r.url))

    def on_failed(request: Any) -> None:
        # Neuroglancer cancels chunk requests it no longer needs (a page left, a view moved):
        # ERR_ABORTED is the browser's own doing; resets and empty answers are the server's.
        if "ERR_ABORTED" not in (request.failure or ""):
            bad.append(f"failed {request.url} {request.failure}")

    page.on("requestfailed", on_failed)


def _all_images_loaded(page: Any) -> list[dict[str, Any]]:
    """Wait until every <img> finished; return those that did not load."""
    page.wait_for_function("() => [...document.images].every((i) => i.complete)", timeout=60_000)
    return page.evaluate(
        "() => [...document.images].filter((i) => !(i.naturalWidth > 0))"
        ".map((i) => ({src: i.src, alt: i.alt}))"
    )


def _viewer_ready(page: Any) -> dict[str, Any]:
    errors = page.evaluate("() => annotome.ready.then((r) => r.errors)")
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    status = page.evaluate(
        """() => [...document.getElementById('neuroglancer').contentDocument
             .querySelectorAll('.neuroglancer-status')].map((e) => e.textContent)"""
    )
    layers = page.evaluate("() => annotome.viewer().state.toJSON().layers.map((l) => l.name)")
    return {"errors": errors, "status": status, "layers": layers}


def _import_through_page(page: Any, site: MakeUpSite, path: Path, name: str) -> str:
    page.goto(f"{site.url}/datasets/import/")
    page.set_input_files("#import-file", str(path))
    page.fill("#import-name", name)
    for axis in "zyx":
        page.fill(f"input[name=voxel_{axis}]", "200")
    page.click("#import-submit")
    page.wait_for_function(
        "() => ['Done.', 'Failed.', 'Cancelled.']"
        ".includes(document.getElementById('job-caption').textContent)",
        timeout=JOB_TIMEOUT_S * 1000,
    )
    status = page.text_content("#import-status") or ""
    assert "Import finished." in status, (status, site.output()[-3000:])
    href = page.get_attribute("#import-status a", "href") or ""
    match = re.search(r"/datasets/([-\w]+)/?$", href)
    assert match, href
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# API steps
# ---------------------------------------------------------------------------------------------


def _wait_job(api: requests.Session, site: MakeUpSite, job: dict[str, Any]) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        current = api.get(f"{site.url}/api/v1/jobs/{job['id']}/", timeout=30).json()
        return current if current["status"] in {"succeeded", "failed", "cancelled"} else None

    final = wait_for(ended, JOB_TIMEOUT_S, f"job {job['id']} ({job.get('name')})")
    assert final["status"] == "succeeded", (final, site.output()[-3000:])
    return final


def _import_through_api(api: requests.Session, site: MakeUpSite, name: str, **fields: Any) -> str:
    files = None
    path = fields.pop("file", None)
    if path is not None:
        files = {"file": (path.name, path.read_bytes())}
    response = api.post(
        f"{site.url}/api/v1/imports/", data={"name": name, **fields}, files=files, timeout=60
    )
    assert response.status_code == 202, (response.status_code, response.text)
    return str(_wait_job(api, site, response.json())["dataset"])


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


def _sweep_urls(site: MakeUpSite, api: requests.Session, slugs: list[str]) -> list[str]:
    """Every page, API endpoint (from /api/v1/, path parameters filled in) and some data URLs."""
    root = api.get(f"{site.url}/api/v1/", timeout=30).json()
    jobs = api.get(f"{site.url}/api/v1/jobs/", timeout=30).json()["results"]
    links = api.get(f"{site.url}/api/v1/datasets/{slugs[0]}/share-links/", timeout=30).json()
    link_list = links["results"] if isinstance(links, dict) else links
    state_key = api.post(
        f"{site.url}/api/v1/datasets/{slugs[0]}/states/",
        json={"state": {"layers": [], "position": [1, 2, 3]}},
        timeout=30,
    ).json()["key"]
    values = {
        "slug": slugs,
        "pk": [str(j["id"]) for j in jobs[:3]] + ["999999"],
        "link_id": [str(link["id"]) for link in link_list] + ["999999"],
        "key": [state_key, "nope"],
        "layer_name": ["nuclei", "image", "nope"],
        "table_format": ["csv", "parquet", "nope"],
        "file_format": ["ply", "obj", "glb", "nope"],
    }
    # Any other id in a path (segments, campaigns, items...): one that may exist, one that not.
    fallback = ["1", "999999"]
    urls: set[str] = set()
    for template in root["endpoints"].values():
        path = template.replace(site.url, "")
        names = re.findall(r"{(\w+)}", path)
        filled = [path]
        for name in names:
            choices = values.get(name, fallback)
            filled = [p.replace("{" + name + "}", v) for p in filled for v in choices]
        urls.update(site.url + p for p in filled)
    token = link_list[0]["token"] if link_list else "no-such-token"
    pages = [
        "/", "/datasets/import/", "/accounts/login/", "/accounts/token/", "/api/docs/",
        "/api/schema/", "/favicon.ico", "/no/such/page/", "/admin/", "/admin/login/",
        "/neuroglancer/v/annotome/", f"/s/{token}/datasets/{slugs[0]}/",
        "/proofreading/", "/proofreading/1/", "/proofreading/999999/",
        "/stereology/campaigns/1/", "/stereology/1/", "/stereology/999999/",
        "/proofreading/1/gallery/", "/proofreading/999999/gallery/", "/proofreading/1/?item=1",
        "/proofreading/1/thresholds/", "/proofreading/1/dashboard/",
        "/proofreading/999999/thresholds/", "/proofreading/999999/dashboard/",
        f"/datasets/{slugs[0]}/detections/nuclei/", f"/datasets/{slugs[0]}/detections/nope/",
        f"/datasets/{slugs[0]}/?state={state_key}", "/datasets/no-such-dataset/",
        "/annotation/", "/annotation/1/", "/annotation/1/next/", "/annotation/task/1/",
        "/annotation/1/review/", "/annotation/1/dashboard/", "/annotation/1/audit/",
        "/annotation/1/viewer/", "/annotation/999999/", "/annotation/task/999999/",
    ]  # fmt: skip
    for slug in slugs:
        pages += [
            f"/datasets/{slug}/", f"/datasets/{slug}/thumbnail.png",
            f"/data/{slug}/image.ome.zarr/zarr.json", f"/data/{slug}/image.ome.zarr/0/zarr.json",
            f"/data/{slug}/image.ome.zarr/0/c/0/0/0", f"/data/{slug}/no/such/file",
        ]  # fmt: skip
    urls.update(site.url + p for p in pages)
    return sorted(urls)


def _sweep(site: MakeUpSite, sessions: dict[str, requests.Session], urls: list[str]) -> None:
    failures: list[str] = []
    counts: dict[int, int] = {}
    for _ in range(ROUNDS):
        for who, session in sessions.items():
            for url in urls:
                response = session.get(url, timeout=60, allow_redirects=False)
                counts[response.status_code] = counts.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{who} GET {url} -> {response.status_code}")
    assert not failures, "\n".join(failures[:40]) + "\n" + site.output()[-4000:]
    # A good part actually answered (most API URLs are filled with ids that do not exist, and
    # the anonymous caller gets 401 for most of the API).
    assert counts.get(200, 0) > len(urls) // 2, counts


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------


def test_make_up_site_survives_a_new_users_visit(
    site: MakeUpSite, browser_context: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    output = site.output()
    assert "Using worker: gthread" in output, output[-3000:]
    assert "Demo admin: username admin" in output
    password = site.admin_password()
    (tmp_path / "inputs").mkdir()
    inputs = _inputs(tmp_path / "inputs")

    page = browser_context.new_page()
    bad: list[str] = []
    requested: list[str] = []
    _watch(page, bad, requested)

    # The front page, anonymous: the public demo with its thumbnail, and the favicon.
    page.goto(site.url + "/")
    assert page.locator(".dataset-card").count() >= 1
    assert _all_images_loaded(page) == []
    page.screenshot(path=str(artifacts_dir / "make-up-front.png"), full_page=True)
    assert site.get("/favicon.ico")[0] == 200

    # Log in through the form.
    page.click("text=Log in")
    page.fill("#id_username", "admin")
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/")
    # A narrow window wraps the header's links; Log out stays in the window.
    for width in (600, 800):
        page.set_viewport_size({"width": width, "height": 800})
        logout = page.locator(".site-user button").bounding_box()
        assert logout is not None and logout["x"] + logout["width"] <= width, (width, logout)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(artifacts_dir / f"make-up-front-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})

    # The viewer draws the demo; nothing asks for the held-open event stream.
    page.click(".dataset-card a.button")
    page.wait_for_url("**/datasets/*/")
    demo_slug = page.url.rstrip("/").rsplit("/", 1)[-1]
    viewer = _viewer_ready(page)
    assert viewer["errors"] == [], viewer
    assert "nuclei" in viewer["layers"], viewer
    assert not any("Python server" in s for s in viewer["status"]), viewer["status"]
    assert not [u for u in requested if "/neuroglancer/events/" in u]
    page.screenshot(path=str(artifacts_dir / "make-up-viewer.png"))

    # A zlib-compressed TIFF through the import page (the upload that broke gevent workers).
    compressed_slug = _import_through_page(page, site, inputs["compressed_tif"], "Compressed")
    page.goto(f"{site.url}/datasets/{compressed_slug}/")
    assert _viewer_ready(page)["errors"] == []

    # The API with the admin's token: register in place, the other formats, an edit.
    cookies = {c["name"]: c["value"] for c in browser_context.cookies()}
    session = requests.Session()
    session.cookies.update(cookies)
    session.headers["X-CSRFToken"] = cookies["csrftoken"]
    session.headers["Referer"] = site.url + "/"
    token = session.get(f"{site.url}/api/v1/auth/token/", timeout=30).json()["token"]
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    registered = _import_through_api(
        api, site, "Registered", server_path=str(inputs["zarr_dir"] / "image.ome.zarr"),
        register_in_place="true",
    )  # fmt: skip
    slugs = [demo_slug, compressed_slug, registered]
    slugs.append(_import_through_api(api, site, "Plain TIFF", file=inputs["plain_tif"],
                                     voxel_size="200,200,200"))  # fmt: skip
    slugs.append(_import_through_api(api, site, "NumPy", file=inputs["npy"],
                                     voxel_size="200,200,200"))  # fmt: skip
    slugs.append(_import_through_api(api, site, "Zipped", file=inputs["zarr_zip"]))
    edited = api.patch(
        f"{site.url}/api/v1/datasets/{compressed_slug}/",
        json={"name": "Compressed, renamed", "visibility": "public"},
        timeout=30,
    )
    assert edited.status_code == 200, edited.text
    share = api.post(
        f"{site.url}/api/v1/datasets/{demo_slug}/share-links/", json={"label": "t"}, timeout=30
    )
    assert share.status_code == 201, share.text

    # Every card's thumbnail loads, as PNG, for the renamed dataset too.
    page.goto(site.url + "/")
    assert page.locator(".dataset-card").count() == len(slugs)
    assert _all_images_loaded(page) == []
    page.screenshot(path=str(artifacts_dir / "make-up-front-all.png"), full_page=True)
    for slug in slugs:
        status, body = site.get(f"/datasets/{slug}/thumbnail.png", Cookie=_cookie(cookies))
        assert status == 200, slug
        assert Image.open(io.BytesIO(body)).size == (256, 256)
    for slug in (registered, slugs[-1]):
        page.goto(f"{site.url}/datasets/{slug}/")
        assert _viewer_ready(page)["errors"] == [], slug

    # The API docs render from the site's own files (this machine reaches no CDN).
    page.goto(site.url + "/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Annotome API" in (page.text_content(".swagger-ui .info .title") or "")
    assert page.locator(".opblock").count() > 10

    # An annotation campaign on the demo, so the sweep's ids reach real campaign, box,
    # member and assignment rows (the admin manages it and annotates in it).
    made = api.post(
        f"{site.url}/api/v1/annotation/campaigns/",
        json={
            "dataset": demo_slug,
            "image_layer": "image",
            "name": "Sweep",
            "members": [{"username": "admin", "role": "annotator"}],
        },
        timeout=30,
    )
    assert made.status_code == 201, made.text
    campaign_id = made.json()["id"]
    tiled = api.post(
        f"{site.url}/api/v1/annotation/campaigns/{campaign_id}/boxes/",
        json={"source": "tile"},
        timeout=30,
    )
    assert tiled.status_code == 201, tiled.text
    taken = api.post(f"{site.url}/api/v1/annotation/campaigns/{campaign_id}/next/", timeout=30)
    assert taken.status_code == 200, taken.text

    # Several rounds over everything: anonymous, session, token.
    sessions = {"anonymous": requests.Session(), "session": session, "token": api}
    _sweep(site, sessions, _sweep_urls(site, api, slugs))
    assert bad == [], bad
    log = site.output()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert "SynchronousOnlyOperation" not in log and "SyncError" not in log
    shutil.rmtree(tmp_path / "inputs", ignore_errors=True)


def _cookie(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())
