"""Values for JSON columns: PostgreSQL's json has no NaN or Infinity (Python's json writes them,
so the pipeline's manifest holds them, e.g. the best validation loss of a run that validated
no epoch), so a figure that is not finite is stored as null (unmeasured)."""

from __future__ import annotations

import math
from typing import Any


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float inside dicts, lists and tuples replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
