"""Neuroglancer precomputed legacy meshes and segment properties: bytes and JSON as specified,
and segment properties read back as the site reads them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InvalidInputError
from pipeline.precomputed import (
    VOLUME_PROPERTY,
    NumberProperty,
    decode_fragment,
    encode_fragment,
    parse_segment_properties,
    read_fragment,
    read_segment_properties,
    write_mesh,
    write_mesh_info,
    write_segment_properties,
)

VERTICES = np.array([[0, 0, 0], [100, 0, 0], [0, 200, 0], [0, 0, 300]], dtype=np.float64)
FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_fragment_bytes_follow_the_legacy_layout(tmp_path: Path) -> None:
    data = encode_fragment(VERTICES, FACES)
    assert len(data) == 4 + 4 * 12 + 4 * 12
    assert struct.unpack_from("<I", data)[0] == 4
    assert struct.unpack_from("<3f", data, 4 + 12) == (100.0, 0.0, 0.0)
    assert struct.unpack_from("<3I", data, 4 + 48) == (0, 2, 1)
    write_mesh(tmp_path, 42, VERTICES, FACES)
    assert json.loads((tmp_path / "42:0").read_text()) == {"fragments": ["42.frag"]}
    vertices, faces = read_fragment(tmp_path / "42.frag")
    np.testing.assert_array_equal(vertices, VERTICES.astype(np.float32))
    np.testing.assert_array_equal(faces, FACES)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_fragments_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        encode_fragment(VERTICES, [[0, 1, 9]])
    with pytest.raises(InvalidInputError):
        encode_fragment(VERTICES[:, :2], FACES)
    with pytest.raises(InvalidInputError):
        decode_fragment(encode_fragment(VERTICES, FACES)[:-2])
    with pytest.raises(InvalidInputError):
        decode_fragment(b"\x01")


def test_info_and_segment_properties_schema(tmp_path: Path) -> None:
    write_mesh_info(tmp_path)
    assert json.loads((tmp_path / "info").read_text()) == {
        "@type": "neuroglancer_legacy_mesh",
        "segment_properties": "segment_properties",
    }
    path = write_segment_properties(
        tmp_path,
        [3, 10],
        labels=["a", "b"],
        descriptions=["first", "second"],
        numbers=[NumberProperty("volume_um3", "volume", [1.5, 2.0])],
    )
    assert path == tmp_path / "segment_properties" / "info"
    payload = json.loads(path.read_text())
    assert payload["@type"] == "neuroglancer_segment_properties"
    assert payload["inline"]["ids"] == ["3", "10"]
    assert payload["inline"]["properties"] == [
        {"id": "label", "type": "label", "values": ["a", "b"]},
        {"id": "description", "type": "description", "values": ["first", "second"]},
        {
            "id": "volume_um3",
            "description": "volume",
            "type": "number",
            "data_type": "float32",
            "values": [1.5, 2.0],
        },
    ]


def test_segment_properties_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not finite"):
        write_segment_properties(
            tmp_path, [1], ["a"], numbers=[NumberProperty("x", "x", [float("nan")])]
        )
    with pytest.raises(InvalidInputError, match="label"):
        write_segment_properties(tmp_path, [1, 2], ["a"])
    with pytest.raises(InvalidInputError, match="2 values"):
        write_segment_properties(
            tmp_path, [1, 2], ["a", "b"], numbers=[NumberProperty("x", "", [1])]
        )


def test_segment_properties_read_back_through_the_info(tmp_path: Path) -> None:
    write_mesh_info(tmp_path)
    write_segment_properties(
        tmp_path,
        [3, 10],
        labels=["a", "b"],
        descriptions=["first", "second"],
        numbers=[NumberProperty(VOLUME_PROPERTY, "volume", [1.5, 2.0])],
    )
    props = read_segment_properties(tmp_path)
    assert props is not None
    assert (props.ids, props.labels, props.descriptions) == (
        [3, 10],
        ["a", "b"],
        ["first", "second"],
    )
    volume = props.number(VOLUME_PROPERTY)
    assert volume is not None and list(volume.values) == [1.5, 2.0]
    assert props.number("absent") is None
    write_mesh_info(tmp_path / "bare", with_properties=False)
    assert read_segment_properties(tmp_path / "bare") is None
    assert read_segment_properties(tmp_path / "nowhere") is None


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"@type": "other"}, "neuroglancer_segment_properties"),
        ({"@type": "neuroglancer_segment_properties", "inline": {}}, "ids"),
        ({"@type": "neuroglancer_segment_properties", "inline": {"ids": ["x"]}}, "decimal"),
        (
            {
                "@type": "neuroglancer_segment_properties",
                "inline": {
                    "ids": ["1"],
                    "properties": [{"id": "v", "type": "number", "values": []}],
                },
            },
            "1 values",
        ),
        (
            {
                "@type": "neuroglancer_segment_properties",
                "inline": {
                    "ids": ["1"],
                    "properties": [{"id": "v", "type": "number", "values": ["a"]}],
                },
            },
            "non-number",
        ),
    ],
)
def test_malformed_segment_properties_are_refused(payload: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_segment_properties(payload)


def test_properties_outside_the_mesh_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "info").write_text(json.dumps({"segment_properties": "../elsewhere"}))
    with pytest.raises(InvalidInputError, match="outside"):
        read_segment_properties(tmp_path)
