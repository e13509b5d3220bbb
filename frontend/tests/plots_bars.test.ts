import { describe, expect, it } from "vitest";
import { barData, barRange, labelLayout, labelStep } from "../src/plots/bars";
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
  it("labels every bar when the labels fit, every k-th when they would overlap", () => {
    expect(labelStep(["a1", "a2", "a3"], 600)).toBe(1);
    const days = Array.from({ length: 30 }, (_, i) => `Dec ${i + 1}`);
    const step = labelStep(days, 600);
    expect(step).toBeGreaterThan(1);
    // What is written fits: labels per step times the label width within the plot.
    expect(Math.ceil(days.length / step) * (6 * 7.5 + 10)).toBeLessThanOrEqual(600);
    expect(labelStep([], 600)).toBe(1);
  });
  it("puts the words of long category labels on lines of their own before dropping any", () => {
    const states = ["todo", "in progress", "in review", "complete", "flagged"];
    expect(labelLayout(states, 900)).toEqual({ step: 1, wrap: false });
    expect(labelLayout(states, 400)).toEqual({ step: 1, wrap: true });
    expect(labelLayout(states, 100).wrap).toBe(false);
    expect(labelLayout(states, 100).step).toBeGreaterThan(1);
  });
  it("formats shares as percentages with an en dash when undefined", () => {
    expect(formatPercent(0.745)).toBe("74.5 %");
    expect(formatPercent(null)).toBe("–");
    expect(formatPercent(undefined)).toBe("–");
  });
});
