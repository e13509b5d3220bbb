// Where a gallery card's pixels lie in the layer: the mirror of pipeline.gallery's
// card_tile_at / card_pixel_to_voxel (checked on the same hand-worked cases,
// frontend/tests/card_geometry_cases.json). A 3D card is 2 x 2 tiles of `tile` pixels with `gap`
// between: xy (x right, y down) | zy (z right, y down) over xz (x right, z down) | the mesh. A 2D
// card is one tile of the card's whole `size`. Positions on a card are continuous pixels from its
// top-left corner: pixel (c, r) spans [c, c + 1) x [r, r + 1). Voxel positions are the label
// image's full resolution, z y x, voxel i's centre at i (as the missed-object API takes them).

import type { Schemas } from "../lib/api";

export type CardGeometry = Schemas["CardGeometry"];

export interface VoxelPoint {
  z: number;
  y: number;
  x: number;
}

/** Tiles of a 3D card: [normal axis, row axis, column axis], axes 0 = z, 1 = y, 2 = x. */
const TILES_3D: readonly (readonly [number, number, number])[] = [
  [0, 1, 2], // xy
  [2, 1, 0], // zy
  [1, 0, 2], // xz
];
/** [row, column] of each slice tile in the 2 x 2 grid (the mesh is at [1, 1]). */
const TILE_POSITIONS: readonly (readonly [number, number])[] = [
  [0, 0],
  [0, 1],
  [1, 0],
];
export const TILE_NAMES = ["xy", "zy", "xz"] as const;

export interface TilePosition {
  /** 0 xy, 1 zy, 2 xz (3D); 0 the one tile (2D). */
  index: number;
  /** Position inside the tile, in its pixels. */
  x: number;
  y: number;
}

/** The slice tile under a card position, or null on the mesh tile, a gap or off the card. */
export function cardTileAt(geometry: CardGeometry, px: number, py: number): TilePosition | null {
  if (!(px >= 0 && px < geometry.size && py >= 0 && py < geometry.size)) return null;
  if (geometry.ndim === 2) return { index: 0, x: px, y: py };
  const step = geometry.tile + geometry.gap;
  const col = Math.floor(px / step);
  const row = Math.floor(py / step);
  const x = px - col * step;
  const y = py - row * step;
  if (x >= geometry.tile || y >= geometry.tile) return null;
  const index = TILE_POSITIONS.findIndex(([r, c]) => r === row && c === col);
  return index < 0 ? null : { index, x, y };
}

/** [normal, row axis, column axis] and the tile's edge in pixels (2D: no normal). */
function tilePlan(geometry: CardGeometry, index: number): [number | null, number, number, number] {
  if (geometry.ndim === 2) return [null, 0, 1, geometry.size];
  const [normal, rows, cols] = TILES_3D[index] ?? [0, 1, 2];
  return [normal, rows, cols, geometry.tile];
}

function at(values: readonly number[], axis: number): number {
  return values[axis] ?? NaN;
}

/** The voxel of a slice plane along its normal (halves up, as the renderer picks it). */
function sliceVoxel(geometry: CardGeometry, normal: number): number {
  const plane = at(geometry.slices_nm, normal);
  return Math.floor(
    (plane - at(geometry.origin_nm, normal)) / at(geometry.voxel_size_nm, normal) + 0.5,
  );
}

/**
 * The voxel a card position shows (z y x; a 2D card's z is 0; along a tile's normal, its slice),
 * or null on the mesh tile, a gap, off the card, or on a pixel outside the volume.
 */
export function cardPixelToVoxel(
  geometry: CardGeometry,
  px: number,
  py: number,
): VoxelPoint | null {
  const found = cardTileAt(geometry, px, py);
  if (!found) return null;
  const [normal, rows, cols, edge] = tilePlan(geometry, found.index);
  const pixelNm = geometry.field_nm / edge;
  const nm = [...geometry.centre_nm];
  nm[rows] = at(nm, rows) + found.y * pixelNm - geometry.field_nm / 2;
  nm[cols] = at(nm, cols) + found.x * pixelNm - geometry.field_nm / 2;
  const voxel = nm.map(
    (value, axis) => (value - at(geometry.origin_nm, axis)) / at(geometry.voxel_size_nm, axis),
  );
  if (normal !== null) voxel[normal] = sliceVoxel(geometry, normal);
  const inside = voxel.every((v, axis) => v >= -0.5 && v < at(geometry.shape, axis) - 0.5);
  if (!inside || voxel.length !== geometry.ndim) return null;
  if (geometry.ndim === 2) return { z: 0, y: at(voxel, 0), x: at(voxel, 1) };
  return { z: at(voxel, 0), y: at(voxel, 1), x: at(voxel, 2) };
}

/**
 * Where a voxel position shows on a card: one card position per slice tile whose slice holds
 * it (within half a voxel along the normal) and whose field shows it; none if no tile does. The
 * gallery draws the campaign's missed-object points there.
 */
export function voxelToCardPixels(
  geometry: CardGeometry,
  point: VoxelPoint,
): { px: number; py: number; tile: number }[] {
  const voxel = geometry.ndim === 2 ? [point.y, point.x] : [point.z, point.y, point.x];
  const tiles = geometry.ndim === 2 ? 1 : TILES_3D.length;
  const out: { px: number; py: number; tile: number }[] = [];
  for (let index = 0; index < tiles; index++) {
    const [normal, rows, cols, edge] = tilePlan(geometry, index);
    if (normal !== null && Math.abs(at(voxel, normal) - sliceVoxel(geometry, normal)) >= 0.5) {
      continue;
    }
    const pixelNm = geometry.field_nm / edge;
    const offset = (axis: number): number =>
      (at(geometry.origin_nm, axis) +
        at(voxel, axis) * at(geometry.voxel_size_nm, axis) -
        at(geometry.centre_nm, axis) +
        geometry.field_nm / 2) /
      pixelNm;
    const x = offset(cols);
    const y = offset(rows);
    if (!(x >= 0 && x < edge && y >= 0 && y < edge)) continue;
    const [row, col] = geometry.ndim === 2 ? [0, 0] : (TILE_POSITIONS[index] ?? [0, 0]);
    const step = geometry.tile + geometry.gap;
    out.push({ px: col * step + x, py: row * step + y, tile: index });
  }
  return out;
}

/**
 * A pointer position (client coordinates) on an image of a card as a card position: the image
 * may be drawn at another size than its pixels (CSS), so scale by its natural size over the
 * rectangle it is drawn in.
 */
export function clientToCardPixel(
  rect: { left: number; top: number; width: number; height: number },
  natural: { width: number; height: number },
  clientX: number,
  clientY: number,
): { px: number; py: number } | null {
  if (!(rect.width > 0 && rect.height > 0 && natural.width > 0 && natural.height > 0)) return null;
  return {
    px: ((clientX - rect.left) * natural.width) / rect.width,
    py: ((clientY - rect.top) * natural.height) / rect.height,
  };
}
