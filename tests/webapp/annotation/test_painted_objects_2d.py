"""A 2D image's painted objects (the real dsb2018 crop, a campaign one pixel deep): each has its
area in um^2, not a volume, surface and sphericity measured one voxel deep, in the objects API,
the labels.zip table and the review page's table."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import pytest
from django.test import Client

from tests.runs_testdata import PIXEL_NM, people, retrain_campaign_2d
from webapp.annotation.models import Assignment

pytestmark = pytest.mark.django_db


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_2d_campaigns_objects_have_an_area() -> None:
    who = people()
    campaign = retrain_campaign_2d(who)
    row = Assignment.objects.filter(box__campaign=campaign).order_by("id").first()
    assert row is not None
    url = f"/api/v1/annotation/assignments/{row.pk}/labels/objects/"
    objects = _signed_in(who["a1"]).get(url).json()["objects"]
    assert objects
    pixel_um2 = (PIXEL_NM / 1000) ** 2
    for o in objects:
        assert o["area_um2"] == pytest.approx(o["voxels"] * pixel_um2, rel=1e-5)
        assert (o["volume_um3"], o["surface_area_um2"], o["sphericity"]) == (None, None, None)
    owner = _signed_in(who["owner"])
    exported = owner.get(f"/api/v1/annotation/campaigns/{campaign.pk}/labels.zip")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(exported.streaming_content)))
    table = list(csv.DictReader(io.StringIO(archive.read("labels_objects.csv").decode())))
    assert table and all(float(r["area_um2"]) > 0 and r["volume_um3"] == "" for r in table)
    review = _signed_in(who["rv"]).get(f"/annotation/{campaign.pk}/review/").content.decode()
    assert 'title="Area, \u00b5m\u00b2"' in review and "Vol. \u00b5m\u00b3" not in review
