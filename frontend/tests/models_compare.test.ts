import { describe, expect, it } from "vitest";

import {
  type BoxScore,
  type Version,
  barCounts,
  chosenVersions,
  compareBoxes,
  compareViewerLink,
  defaultChosen,
  groupedBarData,
  overallGroups,
  perBoxGroups,
  versionColour,
  versionList,
} from "../src/models/logic";

function box(name: string, f1: number | null, precision = 1, recall = 0.5): BoxScore {
  return { box: name, precision, recall, f1, n_gt: 4, n_pred: 2, tp: 2, fp: 0, fn: 2 };
}

function version(id: number, number: number, over: Partial<Version> = {}): Version {
  return {
    id,
    number,
    created: "2026-12-01T10:00:00Z",
    run: id,
    runUrl: `/runs/${id}/`,
    preset: "tiny",
    epochs: 6,
    bestValLoss: 0.4,
    scores: {
      all: { precision: 0.8, recall: 0.6, f1: 0.7 },
      filtered: { precision: 0.9, recall: 0.5, f1: 0.6 },
    },
    evaluated: true,
    detections: 20,
    kept: 15,
    layer: `model-v${number}`,
    viewerUrl: `/datasets/d/?show=model-v${number}`,
    downloadUrl: `/api/v1/models/${id}/download/`,
    perBox: { all: [], filtered: [] },
    ...over,
  };
}

describe("which versions are ticked at first", () => {
  it("ticks the latest two by number, whatever the order given", () => {
    const versions = [version(10, 1), version(12, 3), version(11, 2)];
    expect(defaultChosen(versions).sort()).toEqual([11, 12]);
  });
  it("ticks all of fewer than two, none of none", () => {
    expect(defaultChosen([version(5, 1)])).toEqual([5]);
    expect(defaultChosen([])).toEqual([]);
  });
  it("orders the ticked versions oldest first and ignores unknown ids", () => {
    const versions = [version(12, 3), version(10, 1), version(11, 2)];
    expect(chosenVersions(versions, [12, 10, 99]).map((v) => v.number)).toEqual([1, 3]);
  });
});

describe("per-box scores as grouped bars", () => {
  const v1 = version(1, 1, {
    perBox: {
      all: [box("b10", 0.5), box("b2", 0.25, 0.4, 0.3)],
      filtered: [box("b2", 0.3)],
    },
  });
  const v2 = version(2, 2, {
    perBox: { all: [box("b2", 0.75), box("b7", 1, 1, 1)], filtered: [] },
  });

  it("groups by box in natural order, a bar per version, none where a box is absent", () => {
    const grouped = perBoxGroups([v1, v2], "f1", "all");
    expect(grouped.categories).toEqual(["b2", "b7", "b10"]);
    expect(grouped.series.map((s) => s.label)).toEqual(["v1", "v2"]);
    expect(grouped.series[0]!.values).toEqual([0.25, null, 0.5]);
    expect(grouped.series[1]!.values).toEqual([0.75, 1, null]);
    expect(barCounts(grouped)).toEqual({ v1: 2, v2: 2 });
  });
  it("takes the metric and variant asked for", () => {
    expect(perBoxGroups([v1, v2], "precision", "all").series[0]!.values).toEqual([0.4, null, 1]);
    const filtered = perBoxGroups([v1, v2], "f1", "filtered");
    expect(filtered.categories).toEqual(["b2"]);
    expect(filtered.series.map((s) => s.values)).toEqual([[0.3], [null]]);
  });
  it("keeps a version's colour whatever else is ticked", () => {
    const alone = perBoxGroups([v2], "f1", "all");
    const both = perBoxGroups([v1, v2], "f1", "all");
    expect(alone.series[0]!.colour).toBe(both.series[1]!.colour);
    expect(versionColour(1)).not.toBe(versionColour(2));
    expect(versionColour(9)).toBe(versionColour(1));
  });
  it("has nothing to group without versions or per-box scores", () => {
    expect(perBoxGroups([], "f1", "all")).toEqual({ categories: [], series: [] });
    expect(perBoxGroups([version(3, 3)], "f1", "all").categories).toEqual([]);
  });
  it("sorts box names naturally", () => {
    expect(["b10", "b1", "B3", "a"].sort(compareBoxes)).toEqual(["a", "b1", "B3", "b10"]);
  });
});

describe("overall scores per version", () => {
  it("groups by version with a bar for all objects and one after the filter", () => {
    const worse = version(2, 2, {
      scores: {
        all: { precision: 0.5, recall: 0.5, f1: 0.5 },
        filtered: { precision: null, recall: null, f1: null },
      },
    });
    const grouped = overallGroups([version(1, 1), worse]);
    expect(grouped.categories).toEqual(["v1", "v2"]);
    expect(grouped.series.map((s) => s.label)).toEqual(["all objects", "after the filter"]);
    expect(grouped.series.map((s) => s.values)).toEqual([
      [0.7, 0.5],
      [0.6, null],
    ]);
  });
});

describe("grouped bars for uPlot", () => {
  it("gives each bar its own slot around the category and each series only its slots", () => {
    const data = groupedBarData(
      {
        categories: ["b1", "b2"],
        series: [
          { label: "v1", colour: "#000", values: [0.1, 0.2] },
          { label: "v2", colour: "#111", values: [null, 0.4] },
        ],
      },
      0.8,
    );
    const [x, a, b] = data;
    expect(x!.map((v) => Math.round(v! * 100) / 100)).toEqual([-0.2, 0.2, 0.8, 1.2]);
    expect(a).toEqual([0.1, null, 0.2, null]);
    expect(b).toEqual([null, null, null, 0.4]);
    // x ascends (uPlot needs it) and the closest slots are one slot apart.
    for (let i = 1; i < x!.length; i++) expect(x![i]!).toBeGreaterThan(x![i - 1]!);
  });
  it("puts a lone series on the categories themselves", () => {
    const data = groupedBarData({
      categories: ["a", "b", "c"],
      series: [{ label: "v1", colour: "#000", values: [1, 2, 3] }],
    });
    expect(data).toEqual([
      [0, 1, 2],
      [1, 2, 3],
    ]);
  });
});

describe("the viewer link and captions", () => {
  it("shows the ticked versions' layers together, newest first, skipping lost layers", () => {
    const versions = [version(1, 1), version(2, 2), version(3, 3, { layer: null })];
    expect(compareViewerLink("/datasets/d/", versions)).toBe("/datasets/d/?show=model-v2,model-v1");
    expect(compareViewerLink("/datasets/d/", [version(4, 4, { layer: "a b,c" })])).toBe(
      "/datasets/d/?show=a%20b%2Cc",
    );
    expect(compareViewerLink("/datasets/d/", [version(3, 3, { layer: null })])).toBeNull();
  });
  it("lists versions in words", () => {
    expect(versionList([])).toBe("");
    expect(versionList([{ number: 2 }])).toBe("v2");
    expect(versionList([{ number: 1 }, { number: 2 }, { number: 4 }])).toBe("v1, v2 and v4");
  });
});
