// How sizes and times read on the pages.

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"] as const;

/** 1536 -> "1.5 KB"; whole bytes without decimals; powers of 1024. */
export function formatBytes(n: number): string {
  let value = n;
  let i = 0;
  while (value >= 1024 && i < BYTE_UNITS.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${value.toFixed(i ? 1 : 0)} ${BYTE_UNITS[i]}`;
}

/** A duration as a ticking clock reads it (whole seconds, cut down): 0 s, 42 s, 3 min 05 s,
 * 1 h 02 min. One format for time on task and a run's stages. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** An ISO date-time in the reader's locale, e.g. "12 Mar 2026, 14:05". */
export function formatWhen(iso: string, locale?: string): string {
  return new Date(iso).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
}

/** Server-rendered `<time class="when" datetime="…">` elements in the same format as the
 * scripts' dates (the server writes an ISO-like fallback, in its own time zone). */
export function formatTimes(root: ParentNode): void {
  for (const time of root.querySelectorAll<HTMLTimeElement>("time.when[datetime]")) {
    const iso = time.getAttribute("datetime") ?? "";
    if (!Number.isNaN(Date.parse(iso))) time.textContent = formatWhen(iso);
  }
}

/** What a detection's `volume` column holds: its volume in µm³, or, for an object of a 2D
 * image (`planar`), its area in µm² (pipeline/detections.py). */
export function sizeMeasure(planar: boolean): { label: string; unit: string } {
  return planar ? { label: "Area", unit: "µm²" } : { label: "Volume", unit: "µm³" };
}

/** Sorted slice indices (from 0) as the pages number slices (from 1), in ranges:
 * [2, 3, 4, 8] -> "3–5, 9". */
export function sliceRanges(slices: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < slices.length; i++) {
    let j = i;
    while (j + 1 < slices.length && slices[j + 1] === slices[j]! + 1) j++;
    parts.push(j > i ? `${slices[i]! + 1}–${slices[j]! + 1}` : String(slices[i]! + 1));
    i = j;
  }
  return parts.join(", ");
}
