"""``python -m pipeline segment DISTANCE OUT.zarr``: seeded watershed over a whole distance map.

The settings (seed threshold, peak dynamic, smoothing, minimum seed) come as in ``run``: ``--preset
auto`` (default) uses those recorded in the model file (``--model``, else the model named in the
``predict.json`` that ``predict`` wrote next to the distance map), else the published X-ray values
with a note; ``--preset xray-nuclei`` selects those; ``--seed-threshold``, ``--seed-dynamic-nm``,
``--smooth-nm`` and ``--min-seed-voxels`` override single values.

Zero objects is a warning and exit status 3 unless ``--allow-empty``.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.block_merge import DEFAULT_IOU_THRESHOLD
from pipeline.empty_results import add_allow_empty_argument, report_empty, segment_empty
from pipeline.errors import InvalidInputError
from pipeline.progress import tqdm_progress
from pipeline.segment import segment_volume
from pipeline.segment_params import AUTO, PRESETS, ChosenSegmentParams, choose_segment_params
from pipeline.volumes import open_volume


def _model_of_prediction(distance: Path) -> Path | None:
    """The model file that ``predict`` recorded next to a distance map, if it still exists."""
    manifest = distance.resolve().parent / "predict.json"
    if not manifest.is_file():
        return None
    try:
        recorded = json.loads(manifest.read_text()).get("model")
    except (ValueError, AttributeError):
        return None
    path = Path(recorded) if isinstance(recorded, str) and recorded != "in-memory" else None
    return path if path is not None and path.is_file() else None


def chosen_params(args: argparse.Namespace) -> ChosenSegmentParams:
    """The settings from --preset, --model (or predict.json) and the single-value options."""
    from pipeline.model_io import model_segment_params

    model = Path(args.model) if args.model else None
    if model is None and args.preset == AUTO:
        model = _model_of_prediction(Path(args.distance))
    if model is not None and not model.is_file():
        raise InvalidInputError(f"--model {model}: no model file here")
    return choose_segment_params(
        args.preset,
        model=model_segment_params(model) if model is not None else None,
        model_name=f"model {model.name}" if model is not None else "no model (--model)",
        seed_threshold_nm=args.seed_threshold,
        smooth_nm=args.smooth_nm,
        min_seed_voxels=args.min_seed_voxels,
        seed_dynamic_nm=args.seed_dynamic_nm,
    )


def run(args: argparse.Namespace) -> int:
    volume = open_volume(Path(args.distance), what="distance map")
    distance = volume.array
    ndim = len(distance.shape)
    voxel_size = tuple(args.voxel_size) if args.voxel_size else volume.voxel_size
    for name, values in (
        ("--block", args.block),
        ("--voxel-size", voxel_size),
        ("--halo", args.halo),
    ):
        if values is not None and len(values) not in (1, ndim):
            raise InvalidInputError(f"{name} needs 1 or {ndim} values for a {ndim}D map")
    block = tuple(args.block) * (ndim if len(args.block) == 1 else 1)
    halo = None if args.halo is None else tuple(args.halo) * (ndim if len(args.halo) == 1 else 1)
    if voxel_size is not None and len(voxel_size) == 1:
        voxel_size = voxel_size * ndim
    chosen = chosen_params(args)
    params = chosen.params
    if params.smooth_nm > 0 and voxel_size is None:
        raise InvalidInputError("smoothing needs the voxel size: give --voxel-size (nm)")
    print(chosen.describe())
    executor = ProcessPoolExecutor(max_workers=args.workers) if args.workers > 1 else None
    try:
        result = segment_volume(
            distance,
            Path(args.out),
            block_shape=block,
            halo=halo,
            voxel_size=voxel_size,
            seed_threshold=params.seed_threshold_nm,
            smooth_nm=params.smooth_nm,
            min_seed_voxels=params.min_seed_voxels,
            seed_dynamic_nm=params.seed_dynamic_nm,
            iou_threshold=args.iou,
            executor=executor,
            progress=tqdm_progress("block"),
            name=args.name,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    print(
        f"{result.n_objects} objects ({result.n_segments} block segments, "
        f"{result.n_merged} merged across faces) written to {args.out}"
    )
    return report_empty([segment_empty(result.n_objects)], args.allow_empty)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="seeded watershed of a distance map, block by block, into an OME-Zarr label image",
        description=__doc__,
    )
    parser.add_argument("distance", help="distance map in nm: .npy, zarr array or OME-Zarr image")
    parser.add_argument("out", help="label image to create (NGFF 0.5 .zarr directory)")
    parser.add_argument("--block", type=int, nargs="+", default=[128], metavar="N")
    parser.add_argument(
        "--halo",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="context voxels per axis (default: 2 x seed threshold / voxel size)",
    )
    parser.add_argument(
        "--preset",
        default=AUTO,
        choices=[AUTO, *sorted(PRESETS)],
        help="auto (default): the settings recorded in the model file, else xray-nuclei",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="MODEL.pt",
        help="model file whose recorded settings to use (default: the one in predict.json "
        "next to the distance map)",
    )
    parser.add_argument(
        "--seed-threshold", type=float, default=None, metavar="NM", help="seeds deeper than this"
    )
    parser.add_argument(
        "--smooth-nm",
        type=float,
        default=None,
        metavar="NM",
        help="Gaussian sigma on the distance before seeding (0: off)",
    )
    parser.add_argument(
        "--seed-dynamic-nm",
        type=float,
        default=None,
        metavar="NM",
        help="keep a seed only where its distance peak rises this far above the saddle to a "
        "higher peak (0: off)",
    )
    parser.add_argument(
        "--min-seed-voxels",
        type=int,
        default=None,
        metavar="N",
        help="drop seeds smaller than this (noise maxima)",
    )
    parser.add_argument("--iou", type=float, default=DEFAULT_IOU_THRESHOLD)
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        default=None,
        metavar="NM",
        help="voxel size in nm, z y x (default: from the OME-Zarr metadata)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--name", default="nuclei", help="label image name")
    add_allow_empty_argument(parser)
    parser.set_defaults(func=run)
