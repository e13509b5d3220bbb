import { describe, expect, it } from "vitest";
import { barData, barRange } from "../src/plots/bars";
import { formatPercent } from "../src/plots/dashboard_page";

const bars = [
  { label: "tp", value: 3, colour: "#2ca02c" },
  { label: "fp", value: null, colour: "#d62728" },
  { label: "uncertain", value: 7, colour: "#7f7f7f" },
];

describe("bar charts", () => {
  it("gives each category a series holding only its own value", () => {
    expect(barData(bars)).toEqual([
      [0, 1, 2],
      [3, null, null],
      [null, null, null],
      [null, null, 7],
    ]);
  });
  it("ranges from 0 to a little above the largest value, at least the minimum top", () => {
    expect(barRange(bars, 1)).toEqual([0, 7 * 1.1]);
    expect(barRange([], 1)).toEqual([0, 1.1]);
  });
  it("formats shares as percentages with an en dash when undefined", () => {
    expect(formatPercent(0.745)).toBe("74.5 %");
    expect(formatPercent(null)).toBe("–");
    expect(formatPercent(undefined)).toBe("–");
  });
});
