"""The one box table format that ``train``, ``run``, ``evaluate`` and the site all read.

A box table is a CSV file, one box per row, in either of two forms:

- origin and size: ``x, y, z`` (first voxel) and ``w, h, d`` (extent), as the published
  ``bboxes/*.csv`` tables have it;
- corners: ``x0, y0, z0`` (first voxel) and ``x1, y1, z1`` (one past the last), also accepted
  as ``x_min``/``x_max``, ``xmin``/``xmax`` or ``x_start``/``x_stop``/``x_end``.

Coordinates are voxels unless the header says a unit (``x_um``, ``w_nm``, ``x0_µm``; every
coordinate column must then carry the same one) or a ``unit`` column gives one per row
(``voxel``/``px`` or a length unit). Physical values are divided by the image's voxel size and
rounded to whole voxels; they are lengths from the image origin, so voxel ``k`` spans
``[k, k + 1)`` voxel sizes. Voxel values must be whole numbers. A 2D table (no z columns) fits a
2D image, or a 3D image of depth 1. An optional name column (``name``, ``box``, ``box_name``,
``bbox_ID`` or ``id``) names the boxes; names must be unique. Column names are matched without
regard to case or surrounding blanks.

Every problem is reported with the file, the row (the header is line 1) and the column, and
:func:`box_table_read` checks each box against the image shape, so a bad table fails when a
config is loaded, not minutes into a run.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidInputError
from pipeline.units import UNIT_METRES, normalise_unit

NAME_COLUMNS: tuple[str, ...] = ("name", "box", "box_name", "bbox_id", "id")
UNIT_COLUMN = "unit"
AXES: tuple[str, ...] = ("z", "y", "x")
SIZE_LETTER = {"z": "d", "y": "h", "x": "w"}
VOXEL_UNITS = frozenset({"voxel", "voxels", "vox", "px", "pixel", "pixels", ""})
MAX_ROWS = 100_000
_START_SUFFIXES = ("0", "_min", "min", "_start", "start")
_STOP_SUFFIXES = ("1", "_max", "max", "_stop", "stop", "_end", "end")
_COORDINATE_NAMES = frozenset(
    {a + s for a in AXES for s in ("", *_START_SUFFIXES, *_STOP_SUFFIXES)} | set("whd")
)
_UNIT_SUFFIX = re.compile(r"^(?P<base>.+?)_(?P<unit>nm|um|µm|μm|mm|px|vox|voxels?)$")


@dataclass(frozen=True)
class Box:
    """A box in array index space (axis order of the image: z, y, x or y, x)."""

    name: str
    start: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def stop(self) -> tuple[int, ...]:
        return tuple(s + n for s, n in zip(self.start, self.size, strict=True))

    @property
    def corners(self) -> tuple[int, ...]:
        """``(starts..., stops...)``, the form :class:`pipeline.training.TrainingBox` takes."""
        return (*self.start, *self.stop)

    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size, strict=True))


@dataclass(frozen=True)
class _Layout:
    """Which header column holds what."""

    axes: tuple[str, ...]  # axes present in the table, array order
    start: dict[str, int]  # axis -> column index of its first voxel
    size: dict[str, int]  # axis -> column index of its size (origin+size form)
    stop: dict[str, int]  # axis -> column index of one past its last voxel (corner form)
    name: int | None
    unit_column: int | None
    header_unit: str | None  # unit named by the header suffixes, if any


def _nm_per_unit(unit: str, where: str) -> float | None:
    """Nanometres per ``unit``; ``None`` for voxels."""
    text = unit.strip().lower()
    if text in VOXEL_UNITS:
        return None
    try:
        name = normalise_unit(text)
    except InvalidInputError:
        raise InvalidInputError(
            f"{where}: unit {unit!r} is neither voxels (voxel, px) nor a length (nm, um, ...)"
        ) from None
    if name not in UNIT_METRES:
        raise InvalidInputError(f"{where}: unit {unit!r} is not a length unit")
    return UNIT_METRES[name] / UNIT_METRES["nanometer"]


def _layout(header: Sequence[str], source: str) -> _Layout:
    columns: dict[str, int] = {}
    units: set[str] = set()
    for i, raw in enumerate(header):
        key = raw.strip().lower()
        match = _UNIT_SUFFIX.match(key)
        if match and match["base"] in _COORDINATE_NAMES:
            units.add(match["unit"])
            key = match["base"]
        if key in columns:
            raise InvalidInputError(f"{source}: line 1: column {raw.strip()!r} appears twice")
        columns[key] = i
    if len(units) > 1:
        raise InvalidInputError(
            f"{source}: line 1: the coordinate columns name different units {sorted(units)}"
        )

    def find(axis: str, suffixes: Sequence[str]) -> int | None:
        return next((columns[axis + s] for s in suffixes if axis + s in columns), None)

    start: dict[str, int] = {}
    size: dict[str, int] = {}
    stop: dict[str, int] = {}
    for axis in AXES:
        origin = columns.get(axis)
        corner0, corner1 = find(axis, _START_SUFFIXES), find(axis, _STOP_SUFFIXES)
        extent = columns.get(SIZE_LETTER[axis])
        if origin is not None and extent is not None:
            start[axis], size[axis] = origin, extent
        elif corner0 is not None and corner1 is not None:
            start[axis], stop[axis] = corner0, corner1
        elif any(c is not None for c in (origin, corner0, corner1, extent)):
            raise InvalidInputError(
                f"{source}: line 1: axis {axis} needs {axis} and {SIZE_LETTER[axis]} "
                f"(origin and size) or {axis}0 and {axis}1 (corners)"
            )
    if "x" not in start or "y" not in start:
        raise InvalidInputError(
            f"{source}: line 1: the boxes table lacks x and y columns; give x, y, z, w, h, d "
            "(origin and size) or x0, y0, z0, x1, y1, z1 (corners)"
        )
    name = next((columns[c] for c in NAME_COLUMNS if c in columns), None)
    return _Layout(
        axes=tuple(a for a in AXES if a in start),
        start=start,
        size=size,
        stop=stop,
        name=name,
        unit_column=columns.get(UNIT_COLUMN),
        header_unit=next(iter(units)) if units else None,
    )


def _number(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise InvalidInputError(f"{where}: expected a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{where}: expected a finite number, got {text.strip()!r}")
    return value


def _voxels(value: float, nm_per_unit: float | None, voxel_nm: float | None, where: str) -> int:
    if nm_per_unit is None:
        if value != int(value):
            raise InvalidInputError(f"{where}: voxel positions must be whole numbers, not {value}")
        return int(value)
    if voxel_nm is None:
        raise InvalidInputError(
            f"{where}: a physical coordinate needs the image's voxel size, which is unknown"
        )
    return round(value * nm_per_unit / voxel_nm)


def box_table_parse(
    text: str,
    *,
    ndim: int,
    shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    source: str = "boxes table",
    max_rows: int = MAX_ROWS,
) -> list[Box]:
    """Boxes from CSV text for an ``ndim``-D image (see the module docstring).

    ``shape`` (when known) is checked: every box must lie inside it. ``voxel_size`` (nm, array
    axis order) converts physical coordinates. ``source`` names the table in errors.
    """
    if ndim not in (2, 3):
        raise InvalidInputError(f"{source}: boxes are 2D or 3D, not {ndim}D")
    if shape is not None and len(shape) != ndim:
        raise InvalidInputError(f"{source}: the image shape {tuple(shape)} is not {ndim}D")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInputError(f"{source}: the boxes table is empty") from None
    except csv.Error as exc:
        raise InvalidInputError(f"{source}: line 1: not a CSV header ({exc})") from None
    layout = _layout(header, source)
    image_axes = AXES[-ndim:]
    flat_z = "z" not in layout.axes and ndim == 3
    if flat_z and (shape is None or int(shape[0]) != 1):
        raise InvalidInputError(
            f"{source}: line 1: a 3D image needs z and d (or z0 and z1) columns; only an image "
            "of depth 1 takes a 2D table"
        )
    if "z" in layout.axes and ndim == 2:
        raise InvalidInputError(f"{source}: line 1: the image is 2D but the table has z columns")
    voxel_nm = None if voxel_size is None else dict(zip(image_axes, voxel_size, strict=True))
    boxes: list[Box] = []
    names: set[str] = set()
    try:
        for row in reader:
            line = reader.line_num
            here = f"{source}: line {line}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise InvalidInputError(
                    f"{here}: {len(row)} values, the header has {len(header)} columns"
                )
            if len(boxes) >= max_rows:
                raise InvalidInputError(f"{here}: more than {max_rows:,} boxes")
            unit = layout.header_unit or "voxel"
            if layout.unit_column is not None and row[layout.unit_column].strip():
                row_unit = row[layout.unit_column].strip()
                if layout.header_unit is not None and _nm_per_unit(
                    row_unit, f"{here}: column 'unit'"
                ) != _nm_per_unit(layout.header_unit, here):
                    raise InvalidInputError(
                        f"{here}: column 'unit': {row_unit!r} contradicts the header's unit "
                        f"{layout.header_unit!r}"
                    )
                unit = row_unit
            nm_per_unit = _nm_per_unit(unit, f"{here}: column 'unit'")
            start: list[int] = []
            size: list[int] = []
            for axis in image_axes:
                if axis not in layout.axes:  # a 2D table on a 3D image of depth 1
                    start.append(0)
                    size.append(1)
                    continue
                col = layout.start[axis]
                axis_nm = None if voxel_nm is None else voxel_nm[axis]
                where = f"{here}: column {header[col].strip()!r}"
                lo_value = _number(row[col], where)
                lo = _voxels(lo_value, nm_per_unit, axis_nm, where)
                if axis in layout.size:
                    scol = layout.size[axis]
                    swhere = f"{here}: column {header[scol].strip()!r}"
                    extent_value = _number(row[scol], swhere)
                    n = _voxels(extent_value, nm_per_unit, axis_nm, swhere)
                else:
                    scol = layout.stop[axis]
                    swhere = f"{here}: column {header[scol].strip()!r}"
                    hi_value = _number(row[scol], swhere)
                    n = _voxels(hi_value, nm_per_unit, axis_nm, swhere) - lo
                if n <= 0:
                    raise InvalidInputError(
                        f"{swhere}: the box is empty along {axis} (size {n} voxels)"
                    )
                if shape is not None:
                    extent = int(shape[image_axes.index(axis)])
                    if lo < 0 or lo + n > extent:
                        raise InvalidInputError(
                            f"{where}: voxels {lo}..{lo + n - 1} along {axis} are not inside the "
                            f"volume (0..{extent - 1}, shape {tuple(int(s) for s in shape)})"
                        )
                start.append(lo)
                size.append(n)
            if layout.name is not None:
                name = row[layout.name].strip()
                if not name:
                    raise InvalidInputError(
                        f"{here}: column {header[layout.name].strip()!r}: the name is empty"
                    )
            else:
                name = f"box{len(boxes)}"
            if name in names:
                raise InvalidInputError(f"{here}: the box name {name!r} appears twice")
            names.add(name)
            boxes.append(Box(name, tuple(start), tuple(size)))
    except csv.Error as exc:
        where = f"{source}: line {reader.line_num}"
        raise InvalidInputError(f"{where}: not valid CSV ({exc})") from None
    if not boxes:
        raise InvalidInputError(f"{source}: the boxes table has no rows")
    return boxes


def box_table_read(
    path: Path,
    *,
    ndim: int | None = None,
    shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
) -> list[Box]:
    """Boxes of the CSV file ``path``, checked against ``shape`` when given (see the module
    docstring); ``ndim`` defaults to ``len(shape)``, else 3."""
    path = Path(path)
    if ndim is None:
        ndim = len(shape) if shape is not None else 3
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read the boxes table ({exc})") from None
    return box_table_parse(text, ndim=ndim, shape=shape, voxel_size=voxel_size, source=str(path))
