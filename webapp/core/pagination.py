"""Pagination for list endpoints: limit/offset with bounds the database can take."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_SIZE = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset, with ``limit`` capped at ``MAX_PAGE_SIZE``.

    Without a cap ``?limit=9223372036854775808`` reaches the SQL ``LIMIT`` and overflows it (a
    500 on PostgreSQL and SQLite). An offset past the end already answers an empty page without
    a query.
    """

    max_limit = MAX_PAGE_SIZE
