"""``python -m pipeline parents CHILDREN PARENTS OUT_DIR``: per-parent morphometrics.

Children (e.g. podocyte nuclei) inside parents (e.g. glomeruli), two label images on the same
grid: per parent the number of children, their density, sizes and nearest-neighbour distances,
the parent's size and, for 2D sections, the stereological 3D estimates; per subject the signature
(min, max, mean, median, variance across parents). See :mod:`pipeline.parent_morphometrics`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pipeline.empty_results import add_allow_empty_argument, report_empty, table_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress

# As in pipeline.parent_morphometrics, which is imported only when the command runs (pandas,
# scipy): the parser of every command is built for each call of the CLI.
STEREOLOGY_METHODS = ("abercrombie", "weibel-gomez", "none")
DEFAULT_STEREOLOGY = "abercrombie"
SPHERE_SHAPE_COEFFICIENT = math.sqrt(6.0 / math.pi)


def _voxel_size_nm(
    given: list[float] | None, recorded: tuple[float, ...] | None, ndim: int, name: str
) -> tuple[float, ...]:
    if given:
        voxel = tuple(given) * ndim if len(given) == 1 else tuple(given)
    elif recorded is not None:
        voxel = recorded
    else:
        raise InvalidInputError(f"{name} records no voxel size: give --voxel-size in nm")
    if len(voxel) != ndim:
        raise InvalidInputError(f"--voxel-size needs 1 or {ndim} values for the {ndim}D {name}")
    return voxel


def run(args: argparse.Namespace) -> int:
    """Read both label images, measure, write the four tables, print a summary."""
    from pipeline.parent_morphometrics import (
        SectionModel,
        label_components,
        parent_morphometrics,
        write_parent_tables,
    )
    from pipeline.volumes import open_volume

    children = open_volume(args.children, args.level, what="child labels")
    parents = open_volume(args.parents, args.level, what="parent labels")
    shape = tuple(int(n) for n in children.array.shape)
    if tuple(int(n) for n in parents.array.shape) != shape:
        raise InvalidInputError(
            f"{args.children.name} has shape {shape}, {args.parents.name} "
            f"{tuple(parents.array.shape)}: the label images must lie on the same grid"
        )
    ndim = len(shape)
    child_voxel = _voxel_size_nm(args.voxel_size, children.voxel_size, ndim, args.children.name)
    parent_voxel = _voxel_size_nm(args.voxel_size, parents.voxel_size, ndim, args.parents.name)
    if any(
        not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(child_voxel, parent_voxel, strict=True)
    ):
        raise InvalidInputError(
            f"{args.children.name} has voxels of {child_voxel} nm, {args.parents.name} of "
            f"{parent_voxel} nm: the label images must lie on the same grid"
        )
    section = SectionModel(
        method=args.stereology,
        thickness_um=args.section_thickness,
        caliper_diameter_um=args.caliper_diameter,
        child_shape_coefficient=args.child_shape,
        child_size_coefficient=args.child_size_coefficient,
        parent_shape_coefficient=args.parent_shape,
        parent_size_coefficient=args.parent_size_coefficient,
    )
    result = parent_morphometrics(
        label_components(children.array) if args.children_mask else children.array,
        label_components(parents.array) if args.parents_mask else parents.array,
        tuple(v * 1e-3 for v in child_voxel),
        section=section,
        min_inside_fraction=args.min_inside,
        subject=args.subject if args.subject is not None else args.children.stem,
        progress=tqdm_progress("block"),
    )
    paths = write_parent_tables(result, args.out_dir)
    n_children = int(result.parents["n_children"].sum())
    caliper = (
        f"; D = {result.caliper_diameter_um:.3g} um"
        if result.caliper_diameter_um is not None
        else ""
    )
    print(
        f"{len(result.parents)} parents ({result.dims}D), {n_children} children inside, "
        f"{len(result.outside_children)} outside every parent{caliper}: "
        f"{len(paths)} files in {args.out_dir}"
    )
    return report_empty(
        [table_empty("parents", len(result.parents)), _no_children(n_children, result)],
        args.allow_empty,
    )


def _no_children(n_children: int, result: Any) -> str | None:
    """A warning when the parents hold no child at all (a wrong pairing of label images)."""
    if n_children or not len(result.parents):
        return None
    outside = len(result.outside_children)
    return (
        f"parents: no child lies inside any parent ({outside} outside every parent): are the "
        "children and parents label images given the right way round and on the same grid?"
    )


def register(subparsers: Any) -> None:
    """Add the ``parents`` subcommand."""
    parser = subparsers.add_parser(
        "parents",
        help="per-parent morphometrics: children (nuclei) inside parents (glomeruli, regions)",
        description=(
            "Assign each object of CHILDREN to the object of PARENTS holding most of its voxels "
            "and write OUT_DIR/parents, children, outside_children and signature as .csv and "
            ".parquet: per parent the number of children, density per um^2 (2D) or um^3 (3D), "
            "child sizes, nearest-neighbour distances (um) and parent size; for 2D sections the "
            "3D estimates (Abercrombie or Weibel-Gomez); per subject min, max, mean, median and "
            "variance of each measure across parents."
        ),
    )
    parser.add_argument("children", type=Path, help="child label image (OME-Zarr, Zarr or .npy)")
    parser.add_argument("parents", type=Path, help="parent label image on the same grid")
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--level", type=int, default=0, help="OME-Zarr level (default 0)")
    parser.add_argument(
        "--parents-mask",
        action="store_true",
        help="PARENTS is a mask (non-zero inside, e.g. a semantic head's output): its connected "
        "components are the parents",
    )
    parser.add_argument(
        "--children-mask",
        action="store_true",
        help="CHILDREN is a mask: its connected components are the children",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="NM",
        help="voxel size in nm, one or per axis (default: recorded in the images)",
    )
    parser.add_argument(
        "--min-inside",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="least share of a child's voxels inside its parent (default 0: any voxel)",
    )
    parser.add_argument("--subject", default=None, help="subject name (default: CHILDREN's stem)")
    parser.add_argument(
        "--stereology",
        choices=STEREOLOGY_METHODS,
        default=DEFAULT_STEREOLOGY,
        help=f"2D sections: 3D estimate of the child density (default {DEFAULT_STEREOLOGY})",
    )
    parser.add_argument(
        "--section-thickness",
        type=float,
        default=None,
        metavar="UM",
        help="2D sections: section thickness t in um (needed by abercrombie)",
    )
    parser.add_argument(
        "--caliper-diameter",
        type=float,
        default=None,
        metavar="UM",
        help="children's mean caliper diameter D in um (default: estimated from the profiles)",
    )
    shape = f"{SPHERE_SHAPE_COEFFICIENT:.3f}"
    parser.add_argument(
        "--child-shape",
        type=float,
        default=SPHERE_SHAPE_COEFFICIENT,
        help=f"Weibel-Gomez shape coefficient beta of the children (default {shape}, spheres)",
    )
    parser.add_argument(
        "--child-size-coefficient",
        type=float,
        default=1.0,
        help="Weibel-Gomez size distribution coefficient K of the children (default 1)",
    )
    parser.add_argument(
        "--parent-shape",
        type=float,
        default=SPHERE_SHAPE_COEFFICIENT,
        help=f"shape coefficient of the parents' volume estimate (default {shape}, spheres)",
    )
    parser.add_argument(
        "--parent-size-coefficient",
        type=float,
        default=1.0,
        help="size distribution coefficient of the parents' volume estimate (default 1)",
    )
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
