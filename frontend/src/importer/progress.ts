// What the import page's two bars and captions say: pure functions of the upload's byte counts
// and of the job as /api/v1/jobs/<id>/ reports it.

import type { Job } from "../lib/api";
import { formatBytes } from "../lib/format";

export interface BarView {
  /** 0-100; null: an indeterminate bar (no `value` attribute); undefined: leave it as it is. */
  value: number | null | undefined;
  caption: string;
}

export function uploadProgress(loaded: number, total: number): BarView {
  const pct = total > 0 ? (100 * loaded) / total : 0;
  return {
    value: pct,
    caption: `Uploading… ${pct.toFixed(0)} % (${formatBytes(loaded)} of ${formatBytes(total)})`,
  };
}

/** How a finished job ends on the page. */
export type JobOutcome =
  | { kind: "succeeded"; viewerUrl: string | null; name: string }
  | { kind: "cancelled"; message: string }
  | { kind: "failed"; message: string };

export interface JobView extends BarView {
  /** null while the job is still going (keep polling). */
  outcome: JobOutcome | null;
}

function going(job: Job, caption?: string): JobView {
  const pct = Math.round(100 * (job.progress || 0));
  const counts = job.total > 0 ? ` — ${pct} % (${job.done} of ${job.total})` : "";
  return {
    value: job.total > 0 ? pct : null,
    caption: caption ?? `${job.stage || "Working"}${counts}`,
    outcome: null,
  };
}

/**
 * The job bar for one poll. A status this page does not know yet (the API may add one) counts as
 * still going, so the page keeps polling instead of calling it failed.
 */
export function jobView(job: Job): JobView {
  if (job.state === "retrying") {
    // Its worker stopped (a crash, a restart): the job is redelivered and starts over.
    return {
      value: null,
      caption: "Retrying: the worker stopped, the import starts over…",
      outcome: null,
    };
  }
  const status = job.status;
  switch (status) {
    case "queued":
      return { value: null, caption: "Queued: waiting for a worker…", outcome: null };
    case "running":
      return going(job);
    case "succeeded":
      return {
        value: 100,
        caption: "Done.",
        outcome: {
          kind: "succeeded",
          viewerUrl: job.viewer_url,
          name: job.name || job.dataset || "",
        },
      };
    case "cancelled":
      return {
        value: undefined,
        caption: "Cancelled.",
        outcome: { kind: "cancelled", message: "The import was cancelled; nothing was kept." },
      };
    case "failed":
      return {
        value: undefined,
        caption: "Failed.",
        outcome: { kind: "failed", message: job.error || "The import failed." },
      };
    default: {
      // Type-checking fails here when the schema gains a status: decide how the page shows it.
      const unknown: never = status;
      return going(job, `${job.stage || String(unknown)}`);
    }
  }
}
