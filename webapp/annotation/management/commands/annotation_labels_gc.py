"""``manage.py annotation_labels_gc``: remove painted-label blobs no version refers to."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.annotation.label_gc import labels_gc


class Command(BaseCommand):
    help = (
        "Delete painted-label chunk blobs that no stored version refers to (older than "
        "--min-age seconds) and the folders of deleted campaigns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, default=None, help="Only this campaign.")
        parser.add_argument(
            "--min-age",
            type=float,
            default=3600.0,
            help="Keep blobs younger than this many seconds (saves in progress). Default 3600.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = labels_gc(options["campaign"], options["min_age"])
        self.stdout.write(
            f"{result.blobs_removed} unreferenced blobs removed, "
            f"{result.campaign_dirs_removed} folders of deleted campaigns removed"
        )
