"""A campaign's instructions: Markdown as safe HTML, for every page that shows them."""

from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe


def instructions_html(text: str) -> SafeString:
    """The campaign's Markdown instructions as HTML, sanitised by nh3 (Ammonia's allow-list:
    no script, style, event handler or javascript: URL survives)."""
    html = markdown.markdown(text or "", extensions=["sane_lists"], output_format="html")
    return mark_safe(nh3.clean(html))  # sanitised just above
