"""Panels an app adds to another app's page: the page names a slot, apps above it register a
provider for the slot in their ``AppConfig.ready``, so the page's app never imports them (the
apps' layering, ``pyproject.toml``'s import-linter contracts).

A provider takes the page's keyword arguments and returns a :class:`Panel` or None (not for
this page or this user); the page's template includes each panel's template with ``panel`` as
its context and links its stylesheet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Panel:
    template: str
    context: Any
    stylesheet: str | None = None


Provider = Callable[..., Panel | None]

_SLOTS: dict[str, list[Provider]] = {}


def register(slot: str, provider: Provider) -> None:
    """Add ``provider`` to ``slot`` (once: a second registration of it is ignored)."""
    providers = _SLOTS.setdefault(slot, [])
    if provider not in providers:
        providers.append(provider)


def panels(slot: str, **page: Any) -> list[Panel]:
    """The panels the slot's providers give for this page, in registration order."""
    found = (provider(**page) for provider in _SLOTS.get(slot, []))
    return [panel for panel in found if panel is not None]
