"""``{% when value %}``: a date-time as the pages write them.

The server writes ``2026-12-06 12:43`` (the site's time zone) inside ``<time class="when">``;
the site script (``frontend/src/pages/site.ts``) rewrites it in the reader's locale and time
zone, as the scripts write the dates they draw, so one page never shows two formats.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def when(value: datetime | str | None, empty: str = "\u2013") -> SafeString:
    """``<time class="when" datetime="ISO">Y-m-d H:i</time>`` in the site's time zone, or
    ``empty`` for no date (None, "")."""
    if not isinstance(value, datetime):
        return format_html("{}", empty)
    if timezone.is_aware(value):
        value = timezone.localtime(value)  # as {{ value|date }} writes it
    return format_html(
        '<time class="when" datetime="{}">{}</time>',
        value.isoformat(),
        date_filter(value, "Y-m-d H:i"),
    )
