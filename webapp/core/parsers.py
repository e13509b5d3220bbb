"""Request-body parsers that refuse, with a 400, what the database would refuse with a 500.

PostgreSQL cannot store a NUL character in text or ``jsonb`` (SQLite can), so a JSON body with
``\\u0000`` in any string or key would reach the database and fail there. Bodies nested deeper
than any real document (a Neuroglancer state is about ten levels deep) are refused too, before
Python's recursion limit turns them into a server error.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 100


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` (parsed JSON) cannot be accepted, or None: NUL characters, deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Text may not contain NUL characters (\\u0000)."
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                return f"The JSON body is nested more than {max_depth} levels deep."
            if isinstance(item, dict):
                stack.extend((key, depth + 1) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing NUL characters and absurd nesting with a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.")
        problem = json_problem(data)
        if problem:
            raise ParseError(problem)
        return data
