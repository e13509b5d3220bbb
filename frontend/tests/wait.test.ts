import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TimeoutError, waitFor } from "../src/lib/wait";

describe("waitFor", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("resolves with the first truthy value, treating throws as not yet", async () => {
    let calls = 0;
    const result = waitFor(
      () => {
        calls += 1;
        if (calls < 3) throw new Error("still building");
        return calls < 5 ? undefined : { calls };
      },
      10_000,
      "it",
    );
    await vi.advanceTimersByTimeAsync(50 * 4);
    await expect(result).resolves.toEqual({ calls: 5 });
  });

  it("rejects with a TimeoutError naming what it waited for", async () => {
    let calls = 0;
    const result = waitFor(() => ((calls += 1), false), 1000, "the Neuroglancer viewer", 100);
    const outcome = expect(result).rejects.toThrow(
      new TimeoutError("Timed out waiting for the Neuroglancer viewer"),
    );
    await vi.advanceTimersByTimeAsync(1200);
    await outcome;
    expect(calls).toBeGreaterThanOrEqual(10);
    expect(calls).toBeLessThanOrEqual(12);
  });
});
