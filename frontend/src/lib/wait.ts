// Polling helpers for things that only become true later (Neuroglancer's viewer object, its
// data sources): the page asks every few milliseconds until a deadline.

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/**
 * Resolves with the first truthy value `test` returns, asking every `intervalMs`; rejects with a
 * TimeoutError naming `what` after `timeoutMs`. A `test` that throws counts as "not yet", so it
 * may look at objects that are still being built.
 */
export async function waitFor<T>(
  test: () => T | undefined | null | false,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value: T | undefined | null | false;
    try {
      value = test();
    } catch {
      value = undefined;
    }
    if (value) return value;
    if (Date.now() > deadline) throw new TimeoutError(`Timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}
