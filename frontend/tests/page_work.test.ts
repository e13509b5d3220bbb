// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { ApiError } from "../src/lib/api";
import { ErrorBanner, SerialWork, errorMessage } from "../src/lib/page_work";

describe("SerialWork", () => {
  it("runs tasks one after the other, also after a failure", async () => {
    const work = new SerialWork();
    const order: string[] = [];
    const slow = work.run(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      order.push("first");
      throw new Error("first failed");
    });
    const second = work.run(async () => {
      order.push("second");
      return 2;
    });
    await expect(slow).rejects.toThrow("first failed");
    await expect(second).resolves.toBe(2);
    await work.settled();
    expect(order).toEqual(["first", "second"]);
  });
});

describe("ErrorBanner", () => {
  it("shows and keeps messages, ignores aborted requests, clears", () => {
    const element = document.createElement("p");
    element.hidden = true;
    const banner = new ErrorBanner(element);
    banner.show(new Error("broken"));
    expect(element.hidden).toBe(false);
    expect(element.textContent).toBe("broken");
    banner.show(new DOMException("stopped", "AbortError"));
    expect(banner.errors).toEqual(["broken"]);
    banner.clear();
    expect(element.hidden).toBe(true);
    expect(element.textContent).toBe("");
  });

  it("says what an API error says", () => {
    expect(errorMessage(new ApiError(400, "Unknown verdict 'x'."))).toBe("Unknown verdict 'x'.");
    expect(errorMessage("plain")).toBe("plain");
  });
});
