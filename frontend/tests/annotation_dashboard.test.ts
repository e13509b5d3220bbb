import { describe, expect, it } from "vitest";
import { agreementBins, timelineLabel } from "../src/annotation_dashboard/page";

describe("annotation dashboard", () => {
  it("labels the approvals timeline by day or by hour (UTC)", () => {
    expect(timelineLabel("2026-03-04T00:00:00Z", "day", "en-US")).toBe("Mar 4");
    expect(timelineLabel("2026-03-04T17:00:00Z", "hour", "en-US", "UTC")).toBe("Mar 4, 5 PM");
    expect(timelineLabel("2026-03-04T17:00:00Z", "hour", "en-GB", "Europe/Paris")).toBe(
      "4 Mar, 18",
    );
    expect(timelineLabel("not a date", "day")).toBe("not a date");
  });

  it("draws the F1 histogram as ten labelled bars from red to green", () => {
    const bars = agreementBins([0, 0, 0, 0, 0, 0, 0, 1, 2, 5]);
    expect(bars).toHaveLength(10);
    expect(bars[0]!.label).toBe("0.0–0.1");
    expect(bars[9]!.label).toBe("0.9–1.0");
    expect(bars[9]!.value).toBe(5);
    expect(bars[0]!.colour).toBe("hsl(0, 60%, 45%)");
    expect(bars[9]!.colour).toBe("hsl(120, 60%, 45%)");
  });
});
