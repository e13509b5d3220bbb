"""The owner creates a share link in the viewer's Share panel, a stranger opens it, the owner
revokes it and the link stops working."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from nuclei_dataset import build_nuclei_dataset

from webapp.datasets.models import ShareLink, Visibility

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 60_000
PASSWORD = "owner-pass-123"


def wait_ready(page: Any) -> list[Any]:
    """Wait for the page's state to load and every visible chunk to be drawn; layer errors."""
    errors = page.evaluate("() => annotome.ready.then((r) => r.errors)")
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    return errors


def test_owner_creates_and_revokes_a_share_link_in_the_viewer(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 10  # let the live server's threads finish
    owner = get_user_model().objects.create_user("owner", password=PASSWORD)
    build_nuclei_dataset(
        owner, slug="nuclei", shape=(48, 48, 48), n_nuclei=6, visibility=Visibility.PRIVATE
    )
    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = browser_context.new_page()

    # Log in through the real form; it sends us on to the (private) dataset's viewer.
    page.goto(f"{live_server.url}/accounts/login/?next=/datasets/nuclei/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/datasets/nuclei/")

    # Open the panel: no links yet.
    assert page.is_hidden("#share-panel")
    page.click("#share-toggle")
    assert page.is_visible("#share-panel")
    assert page.get_attribute("#share-toggle", "aria-expanded") == "true"
    page.wait_for_selector(".share-empty", timeout=10_000)
    assert page.inner_text("#share-list") == "No active links."

    # The API's error message is shown as it is (an expiry of 0 days is in the past).
    page.fill("#share-form input[name=days]", "0")
    page.click("#share-form button[type=submit]")
    page.wait_for_selector("#share-error:not([hidden])", timeout=10_000)
    assert "expiry date must be in the future" in page.inner_text("#share-error")
    assert ShareLink.objects.count() == 0

    # Create a labelled link that expires in a week.
    page.fill("#share-form input[name=label]", "reviewers")
    page.fill("#share-form input[name=days]", "7")
    page.click("#share-form button[type=submit]")
    page.wait_for_selector(".share-item", timeout=10_000)
    assert page.is_hidden("#share-error")
    assert page.inner_text("#share-status") == "Link created."
    assert page.inner_text(".share-item .share-label") == "reviewers"
    assert "expires" in page.inner_text(".share-item small")
    url = page.inner_text(".share-item .share-url")
    assert page.get_attribute(".share-item .share-url", "href") == url
    link = ShareLink.objects.get()
    assert link.label == "reviewers" and link.revoked_at is None
    assert link.expires_at is not None
    assert abs(link.expires_at - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(minutes=2)
    assert url == f"{live_server.url}/s/{link.token}/datasets/nuclei/"
    assert page.input_value("#share-form input[name=label]") == ""  # the form was reset

    page.click(".share-item .share-copy")
    page.wait_for_function(
        "() => document.querySelector('.share-item .share-copy').textContent === 'Copied'",
        timeout=5_000,
    )
    assert page.evaluate("() => navigator.clipboard.readText()") == url
    page.screenshot(path=str(artifacts_dir / "share-panel.png"))

    # A stranger (fresh context, no session) opens the URL: the data comes through the link.
    visitor = browser_context.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        shared = visitor.new_page()
        data_responses: list[tuple[int, str]] = []
        shared.on(
            "response",
            lambda r: data_responses.append((r.status, r.url)) if "/data/" in r.url else None,
        )
        response = shared.goto(url)
        assert response is not None and response.status == 200
        assert wait_ready(shared) == []
        report = shared.evaluate("() => annotome.layerReport()")
        assert all(r["loaded"] and not r["errors"] for r in report), report
        sources = shared.evaluate(
            """() => annotome.viewer().layerManager.managedLayers.flatMap((m) =>
                 m.layer.dataSources.map((d) => d.spec.url))"""
        )
        assert len(sources) == 3
        assert all(f"/s/{link.token}/data/nuclei/" in s for s in sources), sources
        ok = [u for status, u in data_responses if status == 200]
        assert ok and all(f"/s/{link.token}/data/nuclei/" in u for u in ok), data_responses
        assert shared.locator("#share-toggle").count() == 0  # visitors cannot manage links
        assert "Log in" in shared.inner_text(".site-user")

        metadata = f"{live_server.url}/s/{link.token}/data/nuclei/image.ome.zarr/zarr.json"
        assert visitor.request.get(metadata).status == 200

        # The owner revokes it in the first page; the link and its data URLs answer 404.
        page.once("dialog", lambda d: d.accept())
        page.click(".share-item .share-revoke")
        page.wait_for_selector(".share-empty", timeout=10_000)
        assert page.inner_text("#share-status") == "Link revoked."
        link.refresh_from_db()
        assert link.revoked_at is not None
        assert shared.goto(url).status == 404
        assert visitor.request.get(metadata).status == 404
    finally:
        visitor.close()
