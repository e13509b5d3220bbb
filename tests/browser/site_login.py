"""Logging in through the site's form, as a person does, landing on the page asked for."""

from __future__ import annotations

from typing import Any


def log_in(page: Any, base_url: str, username: str, password: str, next_path: str) -> None:
    """Open the login form for ``next_path``, submit ``username`` and ``password``, and wait
    until the site has redirected there."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")
