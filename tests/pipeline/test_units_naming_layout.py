"""The one source of each rule: spatial units, label names, the dataset store layout."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidInputError
from pipeline.layout import IMAGE_STORE, label_group_path, label_store_path, mesh_dir_path
from pipeline.naming import (
    LABEL_NAME_MAX_LENGTH,
    is_label_name,
    label_name_check,
    mesh_layer_name,
)
from pipeline.units import (
    COMMON_SPACE_UNITS,
    NGFF_SPACE_UNITS,
    UNIT_METRES,
    UNIT_SYMBOLS,
    nanometres_per_unit,
    normalise_unit,
    space_units_common_first,
)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("nm", "nanometer"),
        ("µm", "micrometer"),
        ("μm", "micrometer"),
        ("micron", "micrometer"),
        ("Micrometer", "micrometer"),
        ("Å", "angstrom"),
        (" mm ", "millimeter"),
    ],
)
def test_units_are_normalised_to_ngff_names(given: str, name: str) -> None:
    assert normalise_unit(given) == name


def test_unknown_unit_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown spatial unit 'furlong'.*micrometer"):
        normalise_unit("furlong")


def test_nanometres_per_unit_names_aliases_missing_and_unknown() -> None:
    assert nanometres_per_unit("nanometer") == 1.0
    assert nanometres_per_unit("um") == pytest.approx(1000.0)
    assert nanometres_per_unit("millimeter") == pytest.approx(1e6)
    assert nanometres_per_unit(None) == 1.0  # no unit recorded: nanometres
    with pytest.raises(InvalidInputError, match="unknown spatial unit 'furlong'"):
        nanometres_per_unit("furlong")


def test_unit_tables_only_name_ngff_units_and_choices_list_each_once() -> None:
    assert set(UNIT_METRES) <= NGFF_SPACE_UNITS and set(UNIT_SYMBOLS) <= NGFF_SPACE_UNITS
    choices = space_units_common_first()
    assert choices[: len(COMMON_SPACE_UNITS)] == list(COMMON_SPACE_UNITS)
    assert sorted(choices) == sorted(NGFF_SPACE_UNITS)


@pytest.mark.parametrize(
    "name", ["nuclei", "cells.v2", "a-b_c", "9", "x" * LABEL_NAME_MAX_LENGTH, "imageX"]
)
def test_label_names_allowed(name: str) -> None:
    assert is_label_name(name) and label_name_check(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "image",
        "nuclei-meshes",
        "../x",
        "a..b",
        ".hidden",
        "-dash",
        "with space",
        "slash/name",
        "x" * (LABEL_NAME_MAX_LENGTH + 1),
    ],
)
def test_label_names_refused_with_a_reason(name: str) -> None:
    assert not is_label_name(name)
    with pytest.raises(InvalidInputError, match="Invalid label name"):
        label_name_check(name)


def test_store_layout_paths() -> None:
    assert (
        label_store_path("nuclei")
        == f"{IMAGE_STORE}/labels/nuclei"
        == "image.ome.zarr/labels/nuclei"
    )
    assert label_group_path("nuclei") == "labels/nuclei"
    assert mesh_dir_path("nuclei") == "meshes/nuclei"
    assert mesh_layer_name("nuclei") == "nuclei-meshes" and not is_label_name("nuclei-meshes")
