// Small display helpers of the task page.

/** The side panel's "Objects": the points, and in a painted campaign (``painted`` not null)
 * the painted objects too, each named (a nucleus may have both a point and a painted mask, so
 * a single sum would count it twice). */
export function objectsText(points: number, painted: number | null): string {
  if (painted === null) return String(points);
  return `${painted} painted · ${points} point${points === 1 ? "" : "s"}`;
}

/** A saved version as the version lists (task page, review page) describe it: a restore, a
 * painting save (labels chunks), or point edits with the count of objects in all. */
export function revisionText(r: {
  kind: string;
  restored_from?: number | null;
  summary: Record<string, unknown>;
}): string {
  const s = r.summary;
  if (r.kind === "restore") return `restored version ${r.restored_from ?? "?"}`;
  if (s["chunks_changed"] !== undefined) {
    return `painted: ${String(s["chunks_changed"])} chunk(s) changed, ${String(s["chunks"] ?? 0)} with labels`;
  }
  const edits = `+${String(s["created"] ?? 0)} ~${String(s["changed"] ?? 0)} −${String(s["deleted"] ?? 0)}`;
  return `${edits} · ${String(s["count"] ?? "?")} objects`;
}

/** A paint view's caption: its plane and the slice it shows as the dataset's voxel coordinate
 * along the plane's normal, as Neuroglancer's position bar and the position line count it
 * (`origin`: the box's first voxel along that axis): "xy · z 57 of 32–81" for a box from z 32. */
export function sliceCaption(
  plane: "xy" | "xz" | "yz",
  slice: number,
  depth: number,
  origin = 0,
): string {
  const axis = { xy: "z", xz: "y", yz: "x" }[plane];
  return `${plane} · ${axis} ${origin + slice} of ${origin}–${origin + depth - 1}`;
}
