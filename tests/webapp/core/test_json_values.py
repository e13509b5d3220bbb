"""JSON column values: PostgreSQL refuses NaN and Infinity, so they are stored as null."""

from __future__ import annotations

import json
import math

from webapp.core.json_values import finite_json


def test_non_finite_floats_become_null_at_any_depth() -> None:
    value = {"loss": math.inf, "rows": [{"f1": math.nan, "n": 3}, (1.5, -math.inf)], "name": "x"}
    clean = finite_json(value)
    assert clean == {"loss": None, "rows": [{"f1": None, "n": 3}, [1.5, None]], "name": "x"}
    json.dumps(clean, allow_nan=False)  # what PostgreSQL accepts
