"""``{% when %}``: the server's fallback text inside a <time> the site script rewrites."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.template import Context, Template


def render(value: object) -> str:
    return Template("{% load when %}{% when value %}").render(Context({"value": value}))


def test_a_date_time_becomes_a_time_element_with_its_iso_value() -> None:
    html = render(datetime(2026, 12, 6, 12, 43, 5, tzinfo=UTC))
    assert html == (
        '<time class="when" datetime="2026-12-06T12:43:05+00:00">2026-12-06 12:43</time>'
    )


def test_no_value_is_a_dash() -> None:
    assert render(None) == "\u2013"  # an en dash
    assert render("") == "\u2013"


def test_the_fallback_text_is_in_the_sites_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    html = render(datetime(2026, 12, 6, 12, 43, tzinfo=UTC))
    assert ">2026-12-06 13:43</time>" in html and 'datetime="2026-12-06T13:43:00+01:00"' in html
