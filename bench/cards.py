"""Gallery cards: cards per second and bytes per card on the demo-sized volume.

    .venv/bin/python bench/cards.py [--size 256] [--nuclei 300] [--z-step 1] [--data DIR]
                                    [--limit N] [--keep DIR]

Sets up what a dataset directory holds after an import (an OME-Zarr 0.5 image with a pyramid of
64^3 chunks and its ``labels/nuclei``, sharded multi-resolution meshes, a detections table) from
``make_nuclei_volume`` (200 nm voxels; ``--z-step 4`` keeps every 4th z slice, for 800 nm z
voxels), in ``--data`` (reused when present) or a temporary directory. Then it measures, in one
process:

- ``render_cards`` as the site's job calls it: spatial order through one chunk cache, stored
  meshes; cards per second, bytes per card, chunks decoded against chunks in the store;
- the same cards each read on its own (no cache, table order): the baseline for the cache;
- cards with the marching-cubes fallback (no mesh directory);
- the mesh tile alone: ``pipeline.mesh_render`` (numpy z-buffer) against matplotlib's
  ``Poly3DCollection`` on Agg (painter's algorithm) for the same meshes and view.

The load average is printed at the start and the end: the machine is shared.
``--keep DIR`` writes sample cards and both mesh renders there to look at.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.gallery import (  # noqa: E402
    CardSource,
    CardStyle,
    ChunkCache,
    detections_from_table,
    open_card_source,
    render_card,
    render_cards,
)

VOXEL_NM = 200.0


def setup(data: Path, size: int, nuclei: int, z_step: int) -> tuple[Path, Path, Path, Path]:
    """image store, labels store, mesh dir, detections CSV (made once per --data directory)."""
    import pandas as pd

    from pipeline.importers import convert_to_ome_zarr
    from pipeline.meshing import build_meshes
    from pipeline.synthetic import make_nuclei_volume

    image_store = data / "image.ome.zarr"
    labels_store = image_store / "labels" / "nuclei"
    mesh_dir = data / "meshes" / "nuclei"
    table = data / "detections.csv"
    if table.exists():
        return image_store, labels_store, mesh_dir, table
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    image, labels = make_nuclei_volume((size, size, size), nuclei, seed=0, voxel_size_nm=VOXEL_NM)
    image, labels = image[::z_step], labels[::z_step]
    np.save(data / "image.npy", image)
    np.save(data / "labels.npy", labels)
    convert_to_ome_zarr(
        data / "image.npy",
        data,
        voxel_size=(VOXEL_NM * z_step, VOXEL_NM, VOXEL_NM),
        unit="nanometer",
        labels={"nuclei": data / "labels.npy"},
    )
    build_meshes(labels_store, mesh_dir)
    morphometrics = pd.read_csv(mesh_dir / "morphometrics.csv")
    morphometrics.to_csv(table, index=False)
    print(f"set up {data} in {time.perf_counter() - t0:.1f} s")
    return image_store, labels_store, mesh_dir, table


def mpl_mesh(
    vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray, field: float, px: int
) -> bytes:
    """The mesh tile drawn by matplotlib's Poly3DCollection (Agg), same view as mesh_render."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from pipeline.mesh_render import view_rotation

    rotation = view_rotation(30.0, 25.0)
    screen = (vertices - centre) @ rotation.T
    tri = screen[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.array([-0.45, -0.6, -0.66])
    light /= np.linalg.norm(light)
    shade = 0.22 + 0.68 * np.abs(normals @ light)
    colours = np.clip(shade[:, None] * np.array([0.89, 0.71, 0.16]), 0, 1)
    fig = plt.figure(figsize=(1, 1), dpi=px)
    fig.patch.set_facecolor((0.07, 0.07, 0.09))
    ax = fig.add_axes((0, 0, 1, 1), projection="3d", proj_type="ortho")
    ax.set_facecolor((0.07, 0.07, 0.09))
    # Screen x right, y down, z into the screen -> matplotlib x right, z up, y into the screen.
    poly = Poly3DCollection(tri[:, :, [0, 2, 1]] * np.array([1.0, 1.0, -1.0]), facecolors=colours)
    poly.set_edgecolor("none")
    poly.set_antialiased(False)  # antialiased faces leave seams between them
    ax.add_collection3d(poly)
    half = field / 2
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_zlim(-half, half)
    ax.set_box_aspect((1, 1, 1), zoom=1.0)
    ax.view_init(elev=0, azim=-90)
    ax.set_axis_off()
    # Matplotlib's 3D axes inscribe the cube in the picture: enlarge so the field fills it.
    ax.set_position((-0.24, -0.24, 1.48, 1.48))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=px)
    plt.close(fig)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nuclei", type=int, default=300)
    parser.add_argument("--z-step", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="set-up directory (reused)")
    parser.add_argument("--limit", type=int, default=0, help="cards per measurement (0: all)")
    parser.add_argument("--mesh-samples", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="write sample cards here")
    args = parser.parse_args()

    import pandas as pd

    print(
        f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
        f"{os.cpu_count()} CPUs"
    )
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.mkdtemp(prefix="bench-cards-")
        data = Path(tmp)
    try:
        image_store, labels_store, mesh_dir, table_path = setup(
            data, args.size, args.nuclei, args.z_step
        )
        detections = detections_from_table(pd.read_csv(table_path))
        if args.limit:
            detections = detections[: args.limit]
        source = open_card_source(image_store, labels_store, mesh_dir=mesh_dir)
        style = CardStyle()
        n_chunks = sum(
            int(
                np.prod(
                    [-(-n // c) for n, c in zip(level.array.shape, level.array.chunks, strict=True)]
                )
            )
            for pyramid in (source.image, source.labels)
            for level in pyramid.levels
        )
        render_card(source, detections[0], style)  # imports, first-call costs
        print(
            f"{len(detections)} detections, card {style.size}x{style.size} px, "
            f"{n_chunks} chunks in the image and label pyramids"
        )

        out = Path(tempfile.mkdtemp(prefix="cards-", dir=data))
        result = render_cards(source, detections, out, style)
        sizes = [p.stat().st_size for p in out.glob("*.png")]
        print(
            f"render_cards (spatial order, chunk cache, stored meshes): "
            f"{result.written / result.seconds:.1f} cards/s, "
            f"{np.mean(sizes) / 1024:.1f} KB/card (min {min(sizes) / 1024:.1f}, "
            f"max {max(sizes) / 1024:.1f}), {result.chunk_reads} chunk reads, "
            f"{len(result.failed)} failed"
        )

        t0 = time.perf_counter()
        for detection in detections:
            render_card(source, detection, style)
        no_cache = len(detections) / (time.perf_counter() - t0)
        print(f"each card read on its own (no cache, table order): {no_cache:.1f} cards/s")

        fallback = CardSource(source.image, source.labels)
        t0 = time.perf_counter()
        cache = ChunkCache()
        for detection in detections:
            render_card(fallback, detection, style, cache=cache)
        print(
            f"marching-cubes fallback meshes (no mesh dir): "
            f"{len(detections) / (time.perf_counter() - t0):.1f} cards/s"
        )

        from pipeline.mesh_render import render_mesh
        from pipeline.precomputed import read_segment_mesh

        samples = detections[: args.mesh_samples]
        meshes = []
        for detection in samples:
            card = render_card(source, detection, style)
            mesh = read_segment_mesh(mesh_dir, detection.segment_id, detail_nm=card.pixel_nm)
            assert mesh is not None
            meshes.append((mesh, np.asarray(card.centre_nm)[::-1], card.field_nm))
        faces = np.mean([len(m[0][1]) for m in meshes])
        t0 = time.perf_counter()
        ours = [
            render_mesh(v, f, centre_xyz=c, field=s, size=style.tile, weld_tolerance=0.2)
            for (v, f), c, s in meshes
        ]
        t_ours = (time.perf_counter() - t0) / len(meshes) * 1000
        t0 = time.perf_counter()
        theirs = [mpl_mesh(v, f, c, s, style.tile) for (v, f), c, s in meshes]
        t_mpl = (time.perf_counter() - t0) / len(meshes) * 1000
        print(
            f"mesh tile, {faces:.0f} faces on average: numpy z-buffer {t_ours:.1f} ms, "
            f"matplotlib Poly3DCollection {t_mpl:.1f} ms ({t_mpl / t_ours:.0f}x)"
        )

        if args.keep:
            from PIL import Image

            args.keep.mkdir(parents=True, exist_ok=True)
            for path in sorted(out.glob("*.png"), key=lambda p: int(p.stem))[:12]:
                shutil.copy(path, args.keep / f"card-{path.stem}.png")
            for i, (raster, png) in enumerate(zip(ours[:4], theirs[:4], strict=True)):
                Image.fromarray((raster.intensity * 255).astype(np.uint8)).save(
                    args.keep / f"mesh-{i}-numpy.png"
                )
                (args.keep / f"mesh-{i}-matplotlib.png").write_bytes(png)
            print(f"sample cards and mesh tiles in {args.keep}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
