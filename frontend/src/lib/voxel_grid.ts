// Where a voxel lies in Neuroglancer's global coordinates, the one convention of every page.
//
// The site's viewer states give Neuroglancer one global unit per voxel of the image layer
// (webapp/viewer/state.py). Neuroglancer reads an OME-Zarr image with its NGFF translation shifted
// by half a voxel (coordinates name voxel centres: google/neuroglancer#440), so the image's voxel
// i spans [i - 0.5, i + 0.5) and its centre is the global coordinate i. The meshes
// (pipeline/meshing.py), the detections' point sources (pipeline/annotation_points.py) and the
// API (voxel positions z y x, voxel i's centre at i) use the same numbers: a position goes
// between the API and the viewer unchanged, and a section z is shown at z itself. Every layer's
// bounds are then half-integers, so Neuroglancer snaps positions to whole numbers too.

/** The global coordinate of voxel `i`'s centre. */
export function voxelCentre(i: number): number {
  return i;
}

/** The voxel whose cell holds global coordinate `p` (cells are [i - 0.5, i + 0.5)). */
export function voxelAt(p: number): number {
  return Math.floor(p + 0.5);
}

/** The global coordinate of voxel `i`'s lower edge (a box of voxels [lo, hi) spans the edges of
 * lo and hi). */
export function voxelEdge(i: number): number {
  return i - 0.5;
}

/** The voxel at the middle of `size` voxels from `start` (the section a box is opened at). */
export function middleVoxel(start: number, size: number): number {
  return start + Math.floor(size / 2);
}
