// Model-assisted objects on the task page: the typed client of assist/click/ and
// assist/proposals/, the queue the annotator walks with keys (accept, reject, next), and the
// decoding of a Proposal's run lengths into a box-local mask the editor paints. Proposals are in
// box-local voxels (z, y, x); a mask is C-ordered over its bbox (x fastest).

import { api, ApiError, type Schemas } from "../lib/api";
import { sleep } from "../lib/wait";

export type Proposal = Schemas["Proposal"];
export type AssistJob = Schemas["AssistJob"];
export type ClickResult = Schemas["ClickResult"];
export type Shape3 = readonly [number, number, number];

const CLICK = "/api/v1/annotation/assignments/{assignment_id}/assist/click/";
const PROPOSALS = "/api/v1/annotation/assignments/{assignment_id}/assist/proposals/";

// --- client ----------------------------------------------------------------------------------

/** The object holding box-local voxel (z, y, x): a Proposal, or null and the reason. */
export function clickObject(
  assignmentId: number,
  z: number,
  y: number,
  x: number,
  signal?: AbortSignal,
): Promise<ClickResult> {
  return api.post(CLICK, {
    path: { assignment_id: assignmentId },
    body: { z, y, x },
    fallback: (status) => `Growing an object from the click failed (HTTP ${status}).`,
    ...(signal ? { signal } : {}),
  });
}

/** Start "propose all in box" (or get the job already running). */
export function startProposals(assignmentId: number): Promise<AssistJob> {
  return api.post(PROPOSALS, {
    path: { assignment_id: assignmentId },
    fallback: (status) => `Proposing objects failed to start (HTTP ${status}).`,
  });
}

/** The latest job, or null when none was started (404). */
export async function proposalsJob(assignmentId: number): Promise<AssistJob | null> {
  try {
    return await api.get(PROPOSALS, { path: { assignment_id: assignmentId } });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export class ProposalsFailed extends Error {
  override name = "ProposalsFailed";
}

export interface PollOptions {
  onProgress?: (progress: number, message: string) => void;
  intervalMs?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** For tests: how to wait between polls. */
  wait?: (ms: number) => Promise<void>;
}

/** Poll the job until it is done (its proposals) or failed (ProposalsFailed with its message),
 * reporting progress 0..1 on the way. */
export async function pollProposals(
  assignmentId: number,
  options: PollOptions = {},
): Promise<Proposal[]> {
  const wait = options.wait ?? sleep;
  const interval = options.intervalMs ?? 500;
  const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
  for (;;) {
    if (options.signal?.aborted) throw new DOMException("Polling stopped.", "AbortError");
    const job = await proposalsJob(assignmentId);
    if (job === null) throw new ProposalsFailed("No proposals were asked for in this task.");
    options.onProgress?.(job.progress, job.message);
    if (job.state === "done") return job.proposals;
    if (job.state === "failed") throw new ProposalsFailed(job.message || "Proposing failed.");
    if (Date.now() > deadline) throw new ProposalsFailed("Proposing took too long; try again.");
    await wait(interval);
  }
}

// --- masks -----------------------------------------------------------------------------------

/** The bbox's extent (depth, height, width). */
export function bboxShape(p: Proposal): Shape3 {
  const [z0, y0, x0, z1, y1, x1] = p.bbox as [number, number, number, number, number, number];
  return [z1 - z0, y1 - y0, x1 - x0];
}

/** Runs [start, length, ...] over `size` voxels as a 0/1 mask; throws on runs out of range. */
export function decodeRle(rle: readonly number[], size: number): Uint8Array {
  if (rle.length % 2) throw new Error("Run lengths come in (start, length) pairs.");
  const out = new Uint8Array(size);
  for (let i = 0; i < rle.length; i += 2) {
    const start = rle[i] ?? 0;
    const length = rle[i + 1] ?? 0;
    if (start < 0 || length < 0 || start + length > size) {
      throw new Error(`Run (${start}, ${length}) lies outside ${size} voxels.`);
    }
    out.fill(1, start, start + length);
  }
  return out;
}

/** The proposal over its bbox: 0/1 per voxel, C order (z, y, x). */
export function proposalBboxMask(p: Proposal): Uint8Array {
  const [d, h, w] = bboxShape(p);
  if (d <= 0 || h <= 0 || w <= 0) throw new Error(`Proposal ${p.id} has an empty bbox.`);
  return decodeRle(p.rle, d * h * w);
}

/** The proposal pasted into a box of `box` (depth, height, width): 0/1 per box voxel, C order.
 * Throws when the bbox reaches outside the box. */
export function proposalBoxMask(p: Proposal, box: Shape3): Uint8Array {
  const [z0, y0, x0, z1, y1, x1] = p.bbox as [number, number, number, number, number, number];
  const [bd, bh, bw] = box;
  if (z0 < 0 || y0 < 0 || x0 < 0 || z1 > bd || y1 > bh || x1 > bw) {
    throw new Error(`Proposal ${p.id} reaches outside the box.`);
  }
  const local = proposalBboxMask(p);
  const w = x1 - x0;
  const out = new Uint8Array(bd * bh * bw);
  let i = 0;
  for (let z = z0; z < z1; z++) {
    for (let y = y0; y < y1; y++) {
      out.set(local.subarray(i, i + w), (z * bh + y) * bw + x0);
      i += w;
    }
  }
  return out;
}

// --- provenance --------------------------------------------------------------------------------

export type ObjectProvenance = Schemas["ObjectProvenance"];

/** The labels save's `provenance` form field for object ids -> provenance. */
export function provenanceField(objects: ReadonlyMap<number, ObjectProvenance>): string {
  const out: Record<string, ObjectProvenance> = {};
  for (const [id, provenance] of objects) {
    if (!Number.isInteger(id) || id <= 0 || id >= 2 ** 32) {
      throw new Error(`${id} is not an object id.`);
    }
    out[String(id)] = provenance;
  }
  return JSON.stringify(out);
}

// --- the queue -------------------------------------------------------------------------------

export type Decision = "accepted" | "rejected";

export interface QueueCounts {
  total: number;
  accepted: number;
  rejected: number;
  pending: number;
}

/** Proposals the annotator walks one by one: the current one is shown; accept (Enter) and
 * reject (Esc) decide it and move on to the next undecided one; next skips it for now. */
export class ProposalQueue {
  private items: Proposal[] = [];
  private readonly decisions = new Map<string, Decision>();
  private index = 0;

  constructor(proposals: readonly Proposal[] = []) {
    this.add(proposals);
  }

  /** Append proposals not already queued (by id). */
  add(proposals: readonly Proposal[]): void {
    const known = new Set(this.items.map((p) => p.id));
    for (const p of proposals) {
      if (!known.has(p.id)) {
        this.items.push(p);
        known.add(p.id);
      }
    }
    if (this.current === undefined) this.seek(0);
  }

  /** The proposal shown now; undefined when every one is decided. */
  get current(): Proposal | undefined {
    const p = this.items[this.index];
    return p !== undefined && !this.decisions.has(p.id) ? p : undefined;
  }

  decision(id: string): Decision | undefined {
    return this.decisions.get(id);
  }

  /** Accept the current proposal; returns it (undefined when there is none) and moves on. */
  accept(): Proposal | undefined {
    return this.decide("accepted");
  }

  /** Reject the current proposal; returns it and moves on. */
  reject(): Proposal | undefined {
    return this.decide("rejected");
  }

  /** Leave the current proposal undecided and show the next undecided one (wrapping). */
  next(): Proposal | undefined {
    this.seek(this.index + 1);
    return this.current;
  }

  get counts(): QueueCounts {
    let accepted = 0;
    let rejected = 0;
    for (const p of this.items) {
      const d = this.decisions.get(p.id);
      if (d === "accepted") accepted++;
      else if (d === "rejected") rejected++;
    }
    const total = this.items.length;
    return { total, accepted, rejected, pending: total - accepted - rejected };
  }

  private decide(decision: Decision): Proposal | undefined {
    const p = this.current;
    if (p === undefined) return undefined;
    this.decisions.set(p.id, decision);
    this.seek(this.index + 1);
    return p;
  }

  /** Point at the first undecided proposal from `start` on, wrapping round. */
  private seek(start: number): void {
    const n = this.items.length;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const p = this.items[i];
      if (p !== undefined && !this.decisions.has(p.id)) {
        this.index = i;
        return;
      }
    }
    this.index = n;
  }
}
