// Small display helpers of the task page.

/** 0 s, 42 s, 3 min 05 s, 1 h 02 min. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** The side panel's "Objects": the points, and in a painted campaign (``painted`` not null)
 * the painted objects too, each named (a nucleus may have both a point and a painted mask, so
 * a single sum would count it twice). */
export function objectsText(points: number, painted: number | null): string {
  if (painted === null) return String(points);
  return `${painted} painted · ${points} point${points === 1 ? "" : "s"}`;
}
