"""The wheel's Neuroglancer client and the stub endpoints it talks to."""

from __future__ import annotations

import pytest
from django.test import Client

from webapp.viewer.neuroglancer_client import client_dir


def test_index_and_hashed_assets(client: Client) -> None:
    index = client.get("/neuroglancer/v/annotome/")
    assert index.status_code == 200
    assert index["Content-Type"].startswith("text/html")
    assert index["Cache-Control"] == "no-cache"
    html = index.content.decode()
    main_js = next(p.name for p in client_dir().glob("main.*.js"))
    assert main_js in html
    # The shim runs before the client's (deferred) scripts.
    assert html.index("annotomeNeuroglancerShim") < html.index(main_js)
    again = client.get("/neuroglancer/v/annotome/", HTTP_IF_MODIFIED_SINCE=index["Last-Modified"])
    assert again.status_code == 304

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


def test_event_stream_without_the_shim_ends_at_once(client: Client) -> None:
    """A client loaded without the shim gets a finite stream: no thread is held open."""
    response = client.get("/neuroglancer/events/annotome?c=abc&gc=0")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert not response.streaming
    lines = [line for line in response.content.split(b"\n") if line]
    assert lines[0] == b"retry: 60000"
    assert all(line.startswith((b":", b"retry")) for line in lines)


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
