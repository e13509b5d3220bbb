import { describe, expect, it } from "vitest";

import {
  MATCHED_LAYER,
  UNMATCHED_LAYER,
  annotationLayers,
  disectorAction,
  estimateRows,
  markLabel,
  positionFor,
  sectionFitScale,
  shownSection,
  voxelOf,
  withInterval,
  withheldReason,
} from "../src/stereology/disector";

const pair = {
  index: 2,
  reference: 40,
  lookup: 45,
  reference_um: 400,
  lookup_um: 450,
  lookup_in_volume: true,
};

describe("disectorAction", () => {
  it("maps the page's keys", () => {
    expect(disectorAction({ key: "m" })).toEqual({ kind: "mark" });
    expect(disectorAction({ key: "M" })).toEqual({ kind: "mark" });
    expect(disectorAction({ key: "Tab" })).toEqual({ kind: "flip" });
    expect(disectorAction({ key: "n" })).toEqual({ kind: "next" });
    expect(disectorAction({ key: "[" })).toEqual({ kind: "previous" });
    expect(disectorAction({ key: "z", ctrlKey: true })).toEqual({ kind: "undo" });
  });

  it("leaves other keys and shortcuts alone", () => {
    expect(disectorAction({ key: "x" })).toBeNull();
    expect(disectorAction({ key: "m", altKey: true })).toBeNull();
    expect(disectorAction({ key: "n", ctrlKey: true })).toBeNull();
    expect(disectorAction({ key: "Tab", shiftKey: true })).toBeNull();
  });
});

describe("positions", () => {
  it("puts the view on the section's voxel centre and keeps x, y when flipping", () => {
    expect(positionFor(pair, "reference", [100, 80, 60])).toEqual([30, 40, 40]);
    expect(positionFor(pair, "reference", [100, 81, 61])).toEqual([30, 40, 40]);
    expect(positionFor(pair, "lookup", [100, 80, 60], [12.5, 7.25, 40])).toEqual([12.5, 7.25, 45]);
  });

  it("fits the whole section into the panel", () => {
    expect(sectionFitScale([10, 650, 325])).toBeCloseTo(1.05);
    expect(sectionFitScale([10, 96, 96], 96)).toBeCloseTo(1.05);
  });

  it("turns a viewer position into the voxel the API wants", () => {
    // Voxel i spans i - 0.5 to i + 0.5: x and y as they are, z the section shown.
    expect(voxelOf([12.5, 7.25, 40.4])).toEqual({ z: 40, y: 7.25, x: 12.5 });
    expect(shownSection([1, 2, 40.49])).toBe(40);
    expect(shownSection([1, 2, 39.5])).toBe(40);
    expect(shownSection([1, 2, 40.5])).toBe(41);
    expect(shownSection(undefined)).toBeUndefined();
  });
});

describe("marks", () => {
  const marks = [
    { id: 1, pair: 2, z: 40, y: 7, x: 12, matched: true, segment_id: 17 },
    { id: 2, pair: 2, z: 40, y: 9, x: 3, matched: false, segment_id: null },
  ];

  it("labels each mark matched or not", () => {
    expect(markLabel(marks[0]!)).toBe("matched: segment 17");
    expect(markLabel(marks[1]!)).toBe("unmatched: no detection");
    expect(markLabel({ ...marks[1]!, segment_id: 5 })).toContain("filtered out");
  });

  it("splits marks into a detected and a missed annotation layer", () => {
    const [detected, missed] = annotationLayers(marks);
    expect(detected).toMatchObject({ name: MATCHED_LAYER, type: "annotation" });
    expect(missed).toMatchObject({ name: UNMATCHED_LAYER });
    expect(detected!["annotations"]).toEqual([
      { type: "point", id: "mark-1", point: [12, 7, 40], description: "matched: segment 17" },
    ]);
    expect((missed!["annotations"] as unknown[]).length).toBe(1);
  });
});

describe("estimate rows", () => {
  const base = {
    reviewer: null,
    n_pairs: 3,
    q_minus: 12,
    matched: 10,
    n_total: 300,
    n_total_low: 200,
    n_total_high: 400,
    detections: 255,
    detected_fraction: 0.85,
    detected_fraction_low: 0.6375,
    detected_fraction_high: 1.275,
    miss_rate: 0.15,
    miss_rate_low: -0.275,
    miss_rate_high: 0.3625,
    miss_rate_sampled: 1 / 6,
    miss_rate_sampled_low: 0.05,
    miss_rate_sampled_high: 0.4,
    confidence: 0.95,
  };

  it("formats values with their intervals, open bounds in words", () => {
    expect(withInterval(0.15, 0.1, 0.2)).toBe("15.0 % (10.0 % – 20.0 %)");
    expect(withInterval(1234.5, 1000, null, false)).toBe("1,230 (at least 1,000)");
    expect(withInterval(0.05, null, 0.12)).toBe("5.0 % (up to 12.0 %)");
    expect(withInterval(0.5, 0.4, undefined)).toBe("50.0 % (at least 40.0 %)");
    expect(withInterval(0.5, null, null)).toBe("50.0 %");
    expect(withInterval(-10.719, null, -3.011)).not.toMatch(/– –|-\d/);
  });

  it("clips fractions to [0, 100 %] and puts the counted objects' miss rate first", () => {
    const rows = estimateRows({ ...base, n_based_shown: true, n_based_withheld: null });
    expect(rows[0]).toEqual(["Miss rate of the counted objects", "16.7 % (5.0 % – 40.0 %)"]);
    expect(rows[2]).toEqual(["Objects counted (Q⁻)", "12 (10 detected)"]);
    expect(rows[5]).toEqual(["Detected fraction D / N", "85.0 % (63.7 % – 100.0 %)"]);
    expect(rows[6]).toEqual(["Miss rate 1 − D / N", "15.0 % (0.0 % – 36.3 %)"]);
  });

  it("withholds D / N with too few counted objects or when it exceeds 1", () => {
    // The demo's case: one counted object, D / N = 11.719 (1171.9 %).
    const one = estimateRows({
      ...base,
      q_minus: 1,
      matched: 0,
      detected_fraction: 11.719,
      detected_fraction_low: 4.011,
      detected_fraction_high: null,
      miss_rate: -10.719,
      miss_rate_low: null,
      miss_rate_high: -3.011,
      min_counted_objects: 10,
    });
    const text = one.map(([, value]) => value).join(" | ");
    expect(one[5]).toEqual([
      "D / N and miss rate 1 − D / N",
      "not enough counted objects yet (1 counted; at least 10 needed)",
    ]);
    expect(one).toHaveLength(6);
    expect(text).not.toMatch(/1171|-1071|– –/);
    // The API's flag decides when present, even with nulled values.
    const flagged = estimateRows({
      ...base,
      q_minus: 20,
      detected_fraction: null,
      miss_rate: null,
      n_based_shown: false,
      n_based_withheld: "exceeds_one",
    });
    expect(flagged[5]![1]).toMatch(/D exceeds the estimate of N \(20 counted\)/);
    expect(withheldReason({ ...base, n_based_withheld: null, n_based_shown: true })).toBeNull();
  });
});
