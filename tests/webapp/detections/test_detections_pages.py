"""Detections pages: the table page and the viewer's Detections panel."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from webapp.datasets.models import ShareLink, Visibility

pytestmark = pytest.mark.django_db


def test_table_page_for_who_may_see_the_layer(make_layer: Any, owner: Any, other: Any) -> None:
    layer = make_layer(rows=12)
    client = Client()
    url = f"/datasets/{layer.dataset.slug}/detections/nuclei/"
    assert client.get(url).status_code == 404
    client.force_login(other)
    assert client.get(url).status_code == 404
    client.force_login(owner)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "12 detections" in html
    assert 'data-url="/api/v1/datasets/cells/layers/nuclei/detections/"' in html
    assert "export.csv" in html and "export.parquet" in html
    assert "meshes.zip" not in html  # the layer has no meshes
    assert "detections_table.js" in html
    assert client.get(f"/datasets/{layer.dataset.slug}/detections/image/").status_code == 404
    assert 'data-planar="false"' in html and ">sphericity</option>" in html


def test_table_page_of_a_2d_layer_filters_by_area(make_layer: Any, owner: Any) -> None:
    """A 2D image's segmentation (axes y, x): the volume column is an area, and neither a
    surface nor a sphericity is offered to filter on."""
    layer = make_layer(rows=3)
    layer.axes = ["y", "x"]
    layer.save()
    client = Client()
    client.force_login(owner)
    html = client.get(f"/datasets/{layer.dataset.slug}/detections/nuclei/").content.decode()
    assert 'data-planar="true"' in html and 'data-meshes="false"' in html
    assert '<option value="volume">area</option>' in html
    assert "sphericity</option>" not in html and "surface_area</option>" not in html


def test_viewer_page_has_the_panel_but_not_through_a_share_link(
    make_layer: Any, owner: Any, other: Any
) -> None:
    layer = make_layer(Visibility.PUBLIC, rows=3)
    dataset = layer.dataset
    client = Client()
    client.force_login(owner)
    html = client.get(f"/datasets/{dataset.slug}/").content.decode()
    assert 'id="detections-panel"' in html and "detections_panel.js" in html
    assert f'data-url="/api/v1/datasets/{dataset.slug}/detections/"' in html
    assert 'data-can-rebuild="1"' in html
    client.force_login(other)
    html = client.get(f"/datasets/{dataset.slug}/").content.decode()
    assert 'id="detections-panel"' in html and 'data-can-rebuild="1"' not in html
    link = ShareLink.objects.create(dataset=dataset, created_by=owner)
    html = Client().get(f"/s/{link.token}/datasets/{dataset.slug}/").content.decode()
    assert "detections-panel" not in html
