"""A campaign's verdict set: the classes a reviewer chooses from, with labels, colours, keys.

Stored as JSON on the campaign (a list of objects), checked here whenever it is written. Each
class has a ``kind``: ``positive`` (a true detection), ``negative`` (a false positive) or
``uncertain`` (cannot tell: sends the detection to the second round). The kind is what the
statistics read, so that a campaign may name its classes as it likes: the consensus rule needs
the uncertain names (``pipeline.agreement``) and the threshold fit needs positive / negative /
left out (``pipeline.thresholds.verdict_labelled_table``'s ``classes``).

Keys S, F, U and Z are the queue's own (skip, flag, undo, Ctrl+Z), so no class may take them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from webapp.core.errors import InvalidRequest

Kind = Literal["positive", "negative", "uncertain"]
KINDS: tuple[Kind, ...] = ("positive", "negative", "uncertain")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
COLOUR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
RESERVED_KEYS = frozenset("sfuz")
MIN_CLASSES, MAX_CLASSES = 2, 12


@dataclass(frozen=True)
class VerdictClass:
    name: str  # what is stored and exported, e.g. "tp"
    label: str  # what the buttons say
    colour: str  # "#rrggbb"
    key: str  # one character, the keyboard shortcut
    kind: Kind


DEFAULT_VERDICT_SET: tuple[VerdictClass, ...] = (
    VerdictClass("tp", "True positive", "#2ca02c", "1", "positive"),
    VerdictClass(
        "tp_distortion", "True positive with shape distortion", "#ff7f0e", "2", "positive"
    ),
    VerdictClass("fp", "False positive", "#d62728", "3", "negative"),
    VerdictClass("uncertain", "Uncertain", "#7f7f7f", "4", "uncertain"),
)


def default_verdict_set() -> list[dict[str, str]]:
    """The default set as stored (a fresh list: a JSONField default must be a callable)."""
    return [asdict(c) for c in DEFAULT_VERDICT_SET]


def _text(entry: Mapping[str, Any], field: str, where: str, max_length: int) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}: {field} must be a non-empty string.")
    value = value.strip()
    if len(value) > max_length or "\x00" in value:
        raise InvalidRequest(f"{where}: {field} must be at most {max_length} characters.")
    return value


def verdict_set_parse(raw: Any) -> list[VerdictClass]:
    """The verdict set ``raw`` (a list of objects) as checked classes, or a 400 saying why not.

    ``kind`` may be left out: a class named ``uncertain`` is then uncertain, ``fp`` negative,
    anything else positive.
    """
    if not isinstance(raw, list) or not MIN_CLASSES <= len(raw) <= MAX_CLASSES:
        raise InvalidRequest(
            f"verdict_set must be a list of {MIN_CLASSES} to {MAX_CLASSES} verdict classes."
        )
    classes: list[VerdictClass] = []
    for i, entry in enumerate(raw):
        where = f"verdict_set[{i}]"
        if not isinstance(entry, dict):
            raise InvalidRequest(f"{where} must be an object with name, label, colour and key.")
        unknown = sorted(set(entry) - {"name", "label", "colour", "key", "kind"})
        if unknown:
            raise InvalidRequest(f"{where}: unknown field(s) {', '.join(map(str, unknown))[:80]}.")
        name = _text(entry, "name", where, 40)
        if not NAME_PATTERN.match(name):
            raise InvalidRequest(
                f"{where}: name {name[:40]!r} must start with a lowercase letter and hold only "
                "lowercase letters, digits and '_' (at most 40)."
            )
        label = _text(entry, "label", where, 80)
        colour = _text(entry, "colour", where, 7)
        if not COLOUR_PATTERN.match(colour):
            raise InvalidRequest(f"{where}: colour must be '#rrggbb', not {colour[:10]!r}.")
        key = _text(entry, "key", where, 1)
        if not key.isprintable() or key.lower() in RESERVED_KEYS:
            raise InvalidRequest(
                f"{where}: key {key!r} is not allowed (S, F, U and Z skip, flag and undo)."
            )
        default_kind: Kind = (
            "uncertain" if name == "uncertain" else "negative" if name == "fp" else "positive"
        )
        kind = entry.get("kind", default_kind)
        if kind not in KINDS:
            raise InvalidRequest(f"{where}: kind must be one of {', '.join(KINDS)}.")
        classes.append(VerdictClass(name, label, colour.lower(), key, cast(Kind, kind)))
    for field in ("name", "key"):
        seen = [getattr(c, field).lower() for c in classes]
        duplicates = sorted({v for v in seen if seen.count(v) > 1})
        if duplicates:
            raise InvalidRequest(
                f"verdict_set: each {field} must be unique; repeated: {', '.join(duplicates)}."
            )
    if all(c.kind == "uncertain" for c in classes):
        raise InvalidRequest("verdict_set needs at least one class that is not uncertain.")
    return classes


def verdict_set_json(classes: Sequence[VerdictClass]) -> list[dict[str, str]]:
    return [asdict(c) for c in classes]


def verdict_classes(raw: Any) -> list[VerdictClass]:
    """The classes of a stored (already checked) verdict set."""
    return [VerdictClass(**entry) for entry in raw]


def uncertain_names(raw: Any) -> tuple[str, ...]:
    """Names whose verdict sends a detection to the second round."""
    return tuple(c.name for c in verdict_classes(raw) if c.kind == "uncertain")


def threshold_classes(raw: Any) -> dict[str, bool | None]:
    """``pipeline.thresholds``' classes: positive True, negative False, uncertain left out."""
    return {
        c.name: (True if c.kind == "positive" else False if c.kind == "negative" else None)
        for c in verdict_classes(raw)
    }
