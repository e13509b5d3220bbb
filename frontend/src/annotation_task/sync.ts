// Saving the annotation layer to the server as it changes. The page marks the ids Neuroglancer
// says changed (childAdded / childUpdated / childCommitted / childDeleted) dirty; a flush turns
// only those into ops by comparing each with what the server holds (the ledger: one key per
// annotation), so a task with thousands of annotations costs a few map look-ups per change, not
// a pass over all of them. Saves go one at a time, each based on the version the previous one
// returned; a 409 stops saving and hands the conflict to the page (reload or merge), never a
// silent overwrite.

import type { Kind } from "./coords";

/** One annotation as the API stores it. */
export interface ApiAnnotation {
  uid: string;
  kind: Kind;
  label: string;
  object_id: number;
  coords: number[][];
  description: string;
}

export type Op = ({ op: "upsert" } & ApiAnnotation) | { op: "delete"; uid: string };

/** What identifies an annotation's content: equal keys, nothing to save. */
export function keyOf(a: ApiAnnotation): string {
  return JSON.stringify([a.kind, a.label, a.object_id, a.coords, a.description ?? ""]);
}

/** What the server holds: the version and each annotation's key. */
export class Ledger {
  version = 0;
  readonly saved = new Map<string, string>();

  reset(version: number, annotations: readonly ApiAnnotation[]): void {
    this.version = version;
    this.saved.clear();
    for (const a of annotations) this.saved.set(a.uid, keyOf(a));
  }

  /** The ops that bring the server to the page's state for `uids`; `read` gives the page's
   * annotation, undefined when it is gone, null while it is still being drawn (skipped). */
  opsFor(
    uids: Iterable<string>,
    read: (uid: string) => ApiAnnotation | undefined | null,
  ): { ops: Op[]; skipped: string[] } {
    const ops: Op[] = [];
    const skipped: string[] = [];
    for (const uid of uids) {
      const current = read(uid);
      if (current === null) {
        skipped.push(uid);
        continue;
      }
      if (current === undefined) {
        if (this.saved.has(uid)) ops.push({ op: "delete", uid });
        continue;
      }
      if (this.saved.get(uid) !== keyOf(current)) ops.push({ op: "upsert", ...current });
    }
    return { ops, skipped };
  }

  /** After the server accepted `ops` as `version`. */
  applied(ops: readonly Op[], version: number): void {
    for (const op of ops) {
      if (op.op === "delete") this.saved.delete(op.uid);
      else this.saved.set(op.uid, keyOf(op));
    }
    this.version = version;
  }
}

/** Every difference between the page's annotations and the ledger (merge, tests). */
export function diffAll(ledger: Ledger, current: ReadonlyMap<string, ApiAnnotation>): Op[] {
  const uids = new Set<string>([...ledger.saved.keys(), ...current.keys()]);
  return ledger.opsFor(uids, (uid) => current.get(uid)).ops;
}

export class StaleError extends Error {
  override name = "StaleError";
  constructor(readonly currentVersion: number) {
    super(`A newer version (${currentVersion}) was saved elsewhere.`);
  }
}

export interface SaverOptions {
  ledger: Ledger;
  read: (uid: string) => ApiAnnotation | undefined | null;
  /** POSTs {base_version, ops}; resolves with the new version; StaleError on 409. */
  post: (baseVersion: number, ops: Op[]) => Promise<{ version: number }>;
  /** A save was applied (it is still in flight: `busy` is true until `onSettled`). */
  onSaved?: (version: number, ops: Op[], ms: number) => void;
  /** A save ended (applied or not) and none is in flight: what the page says may change. */
  onSettled?: () => void;
  onStale?: (error: StaleError) => void;
  onError?: (error: unknown) => void;
  /** Quiet time before a save (ms); a save is never later than `maxDelayMs` after a change. */
  delayMs?: number;
  maxDelayMs?: number;
  retryMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** Batches dirty ids into saves, one in flight at a time. */
export class Saver {
  readonly dirty = new Set<string>();
  stale: StaleError | undefined;
  enabled = true;
  private timer: unknown;
  private firstDirtyAt: number | undefined;
  private inFlight: Promise<void> | undefined;
  private readonly delayMs: number;
  private readonly retryMs: number;
  private readonly maxDelayMs: number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;

  constructor(private readonly options: SaverOptions) {
    this.delayMs = options.delayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 1000;
    this.retryMs = options.retryMs ?? 3000;
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer =
      options.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  get busy(): boolean {
    return this.inFlight !== undefined || this.dirty.size > 0;
  }

  mark(uid: string): void {
    this.dirty.add(uid);
    this.firstDirtyAt ??= Date.now();
    this.schedule();
  }

  private schedule(): void {
    if (!this.enabled || this.stale) return;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    const waited = Date.now() - (this.firstDirtyAt ?? Date.now());
    const wait = Math.max(0, Math.min(this.delayMs, this.maxDelayMs - waited));
    this.timer = this.setTimer(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
  }

  /** Saves what is dirty now (after the save in flight); resolves when nothing is left to send
   * or saving stopped (stale, disabled, error). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.inFlight) {
        await this.inFlight;
        continue;
      }
      if (!this.enabled || this.stale || this.dirty.size === 0) return;
      const sent = this.send();
      if (!sent) return;
      this.inFlight = sent;
      try {
        await sent;
      } finally {
        this.inFlight = undefined;
        this.options.onSettled?.();
      }
      if (this.lastFailed) return;
    }
  }

  private lastFailed = false;

  private send(): Promise<void> | undefined {
    const { ledger, read, post } = this.options;
    const uids = [...this.dirty];
    this.dirty.clear();
    const { ops, skipped } = ledger.opsFor(uids, read);
    for (const uid of skipped) this.dirty.add(uid);
    this.firstDirtyAt = this.dirty.size ? Date.now() : undefined;
    if (ops.length === 0) return undefined;
    const started = Date.now();
    this.lastFailed = false;
    return post(ledger.version, ops).then(
      (answer) => {
        ledger.applied(ops, answer.version);
        this.options.onSaved?.(answer.version, ops, Date.now() - started);
      },
      (error: unknown) => {
        this.lastFailed = true;
        for (const op of ops) this.dirty.add(op.uid);
        if (error instanceof StaleError) {
          this.stale = error;
          this.options.onStale?.(error);
        } else {
          this.options.onError?.(error);
          // Try again later (a lost connection); the changes stay dirty meanwhile.
          this.setTimer(() => this.schedule(), this.retryMs);
        }
      },
    );
  }

  /** Forget unsaved changes (reload). */
  discard(): void {
    this.dirty.clear();
    this.firstDirtyAt = undefined;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
    this.stale = undefined;
  }

  /** Resume after a conflict was resolved. */
  resume(): void {
    this.stale = undefined;
    if (this.dirty.size) this.schedule();
  }

  /** Resolves when nothing is dirty or in flight (or saving stopped). */
  async settled(): Promise<void> {
    if (this.timer !== undefined) {
      this.clearTimer(this.timer);
      this.timer = undefined;
    }
    await this.flush();
  }
}
