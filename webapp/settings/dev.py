"""Embedded settings: what `make up` and the test suite use."""

from webapp.settings.base import *  # noqa: F403
