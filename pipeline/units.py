"""Spatial units: the one list of OME-NGFF unit names, their aliases and their sizes.

Every layer that reads, writes or shows a unit (importers, the site's forms and API, the viewer's
scale bar) takes it from here, so a unit accepted in one place is accepted everywhere.
"""

from __future__ import annotations

from ome_zarr.axes import KNOWN_SPATIAL_UNITS

from pipeline.errors import InvalidInputError

#: Spatial units of the OME-NGFF specification (UDUNITS-2 names).
NGFF_SPACE_UNITS: frozenset[str] = frozenset(KNOWN_SPATIAL_UNITS)
#: What a person or a file may write instead (looked up in lower case first).
UNIT_ALIASES: dict[str, str] = {
    "nm": "nanometer",
    "nanometre": "nanometer",
    "um": "micrometer",
    "µm": "micrometer",  # micro sign
    "μm": "micrometer",  # greek mu
    "\\u00b5m": "micrometer",  # as ImageJ escapes it
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometre": "micrometer",
    "mm": "millimeter",
    "millimetre": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "metre": "meter",
    "pm": "picometer",
    "å": "angstrom",
    "a": "angstrom",
}
#: Metres per unit, to bring axes with different units to one.
UNIT_METRES: dict[str, float] = {
    "angstrom": 1e-10,
    "picometer": 1e-12,
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
}
#: Short symbols for labels and scale bars.
UNIT_SYMBOLS: dict[str, str] = {
    "angstrom": "\u00c5",
    "picometer": "pm",
    "nanometer": "nm",
    "micrometer": "\u00b5m",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
}
#: Units microscopy data is usually in, listed first in choices.
COMMON_SPACE_UNITS: tuple[str, ...] = ("nanometer", "micrometer", "millimeter", "angstrom")
DEFAULT_UNIT = "nanometer"


def normalise_unit(unit: str) -> str:
    """Return the NGFF name of a spatial unit (``nm`` -> ``nanometer``) or raise."""
    name = unit.strip()
    name = UNIT_ALIASES.get(name.lower(), UNIT_ALIASES.get(name, name.lower()))
    if name not in NGFF_SPACE_UNITS:
        raise InvalidInputError(
            f"unknown spatial unit {unit!r}: use an OME-NGFF spatial unit such as nanometer or "
            f"micrometer (one of {', '.join(sorted(NGFF_SPACE_UNITS))})"
        )
    return name


def nanometres_per_unit(unit: str | None) -> float:
    """Nanometres in one ``unit`` (NGFF name or alias); no unit recorded is taken as nanometres."""
    if not unit:
        return 1.0
    return UNIT_METRES[normalise_unit(unit)] / UNIT_METRES["nanometer"]


def space_units_common_first() -> list[str]:
    """Every NGFF spatial unit, the common microscopy ones first (for a form's choices)."""
    rest = sorted(NGFF_SPACE_UNITS - set(COMMON_SPACE_UNITS))
    return [*COMMON_SPACE_UNITS, *rest]
