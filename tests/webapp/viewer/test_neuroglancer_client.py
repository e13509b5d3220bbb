"""The wheel's Neuroglancer client and the stub endpoints it talks to."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from webapp.viewer.neuroglancer_client import client_dir


def test_index_and_hashed_assets(client: Client) -> None:
    index = client.get("/neuroglancer/v/annotome/")
    assert index.status_code == 200
    assert index["Content-Type"].startswith("text/html")
    assert index["Cache-Control"] == "no-cache"
    html = b"".join(index.streaming_content).decode()
    main_js = next(p.name for p in client_dir().glob("main.*.js"))
    assert main_js in html

    js = client.get(f"/neuroglancer/v/annotome/{main_js}")
    assert js.status_code == 200
    assert "javascript" in js["Content-Type"]
    assert "immutable" in js["Cache-Control"]
    css = client.get(f"/neuroglancer/v/annotome/{next(client_dir().glob('main.*.css')).name}")
    assert css["Content-Type"].startswith("text/css")
    wasm = client.get(f"/neuroglancer/v/annotome/{next(client_dir().glob('*.wasm')).name}")
    assert wasm["Content-Type"] == "application/wasm"


def test_unknown_token_and_paths_are_404(client: Client) -> None:
    assert client.get("/neuroglancer/v/other/").status_code == 404
    assert client.get("/neuroglancer/v/annotome/nope.js").status_code == 404
    assert client.get("/neuroglancer/v/annotome/..%2f..%2fserver.py").status_code == 404
    assert client.get("/neuroglancer/events/other").status_code == 404


def test_event_stream_is_held_open_sse_and_ends(client: Client, settings: Any) -> None:
    settings.NEUROGLANCER_EVENTS_KEEPALIVE_SECONDS = 0.05
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 0.2
    response = client.get("/neuroglancer/events/annotome?c=abc&gc=0")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    chunks = list(response.streaming_content)  # ends by itself after MAX_SECONDS
    assert chunks[0].startswith(b"retry: ")
    assert all(line.startswith((b":", b"retry")) for c in chunks for line in c.split(b"\n") if line)
    assert len(chunks) >= 3  # keep-alive comments followed


@pytest.mark.parametrize(
    "path",
    ["state", "action", "credentials", "volume_response", "volume_response/annotome/1/info"],
)
def test_post_stubs_answer_generation_without_csrf(path: str) -> None:
    client = Client(enforce_csrf_checks=True)
    url = f"/neuroglancer/{path}" if "/" in path else f"/neuroglancer/{path}/annotome"
    response = client.post(url, data='{"s": {}, "g": "1"}', content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"g": "0"}
    assert client.get(url).status_code == 405
