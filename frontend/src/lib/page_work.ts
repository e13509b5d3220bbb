// What the interactive pages (queue, gallery, disector) share: writes sent one after the other,
// and one error banner that also keeps every message for the browser tests.

import { ApiError } from "./api";

/** A person-readable message for anything thrown (API errors carry the server's message). */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

/** Runs tasks one after the other, whether or not the one before failed: an undo must follow
 * the verdict it undoes, a mark's deletion the mark. */
export class SerialWork {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Settles when everything queued so far has. */
  settled(): Promise<unknown> {
    return this.tail;
  }
}

/** The page's error banner: `show` puts a message up (an aborted request is not an error),
 * `clear` takes it down; `errors` keeps every message shown. */
export class ErrorBanner {
  readonly errors: string[] = [];

  constructor(private readonly banner: HTMLElement) {}

  show(error: unknown): void {
    if (error instanceof DOMException && error.name === "AbortError") return;
    const text = errorMessage(error);
    this.errors.push(text);
    this.banner.textContent = text;
    this.banner.hidden = false;
  }

  clear(): void {
    this.banner.hidden = true;
    this.banner.textContent = "";
  }
}
