import { describe, expect, it } from "vitest";
import { timelineLabel } from "../src/annotation_dashboard/page";

describe("annotation dashboard", () => {
  it("labels the approvals timeline by day or by hour (UTC)", () => {
    expect(timelineLabel("2026-03-04T00:00:00Z", "day")).toBe("03-04");
    expect(timelineLabel("2026-03-04T17:00:00Z", "hour")).toBe("03-04 17:00");
  });
});
