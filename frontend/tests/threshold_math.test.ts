import { describe, expect, it } from "vitest";
import {
  type Bounds,
  filterScores,
  formatScore,
  keeps,
  labelsOf,
  logRange,
  formatTick,
  logAxisLabels,
  logTicks,
  thinLogLabels,
  sphericityRange,
} from "../src/plots/threshold_math";

const KINDS = ["positive", "positive", "negative", "uncertain"] as const;
// Five positives (volume 10-14, sphericity 0.9), round small negatives (2, 3), flat large
// negatives (sphericity 0.4, 0.5), one uncertain: the API test's constructed case.
const volume = [10, 11, 12, 13, 14, 2, 3, 12, 12, 50];
const sphericity = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.4, 0.5, 0.9];
const verdict = [0, 1, 0, 0, 1, 2, 2, 2, 2, 3];
const none: Bounds = { volumeMin: null, volumeMax: null, sphericityMin: null };

describe("labelsOf", () => {
  it("maps verdict indices to positive, negative and left out", () => {
    expect(Array.from(labelsOf(verdict, KINDS))).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, -1]);
  });
  it("leaves out indices outside the classes", () => {
    expect(Array.from(labelsOf([7, -1], KINDS))).toEqual([-1, -1]);
  });
});

describe("filterScores", () => {
  const labels = labelsOf(verdict, KINDS);
  it("keeps everything without bounds", () => {
    const s = filterScores(volume, sphericity, labels, none);
    expect(s).toMatchObject({ positives: 5, negatives: 4, leftOut: 1, keptPositives: 5 });
    expect(s.precision).toBeCloseTo(5 / 9);
    expect(s.recall).toBe(1);
    expect(s.f1).toBeCloseTo(10 / 14);
  });
  it("applies volume >= and sphericity >= inclusively, as the pipeline", () => {
    const s = filterScores(volume, sphericity, labels, {
      ...none,
      volumeMin: 3,
      sphericityMin: 0.9,
    });
    expect([s.keptPositives, s.keptNegatives]).toEqual([5, 1]);
    expect(s.precision).toBeCloseTo(5 / 6);
    expect(s.recall).toBe(1);
  });
  it("applies the volume maximum and counts lost positives in recall", () => {
    const s = filterScores(volume, sphericity, labels, { ...none, volumeMin: 11, volumeMax: 12 });
    // Kept: positives 11, 12; negatives 12 (0.4), 12 (0.5).
    expect([s.keptPositives, s.keptNegatives]).toEqual([2, 2]);
    expect(s.precision).toBe(0.5);
    expect(s.recall).toBeCloseTo(0.4);
  });
  it("gives null precision when nothing is kept and null recall without positives", () => {
    const s = filterScores(volume, sphericity, labels, { ...none, volumeMin: 1000 });
    expect(s.precision).toBeNull();
    expect(s.recall).toBe(0);
    const empty = filterScores([1], [1], [0], none);
    expect(empty.recall).toBeNull();
    expect(empty.f1).toBeNull();
  });
  it("agrees with keeps() point by point", () => {
    const bounds = { volumeMin: 2.5, volumeMax: 13, sphericityMin: 0.45 };
    const kept = volume.filter((v, i) => labels[i] !== -1 && keeps(v, sphericity[i]!, bounds));
    const s = filterScores(volume, sphericity, labels, bounds);
    expect(s.keptPositives + s.keptNegatives).toBe(kept.length);
  });
  it("takes 100,000 points quickly", () => {
    const n = 100_000;
    const v = new Float64Array(n).map((_, i) => 1 + (i % 1000));
    const sp = new Float64Array(n).map((_, i) => (i % 97) / 97);
    const l = new Int8Array(n).map((_, i) => (i % 3) - 1);
    const t0 = performance.now();
    for (let k = 0; k < 10; k++)
      filterScores(v, sp, l, { volumeMin: k * 50, volumeMax: null, sphericityMin: 0.3 });
    expect((performance.now() - t0) / 10).toBeLessThan(20);
  });
});

describe("formatting and ranges", () => {
  it("formats scores", () => {
    expect(formatScore(null)).toBe("–");
    expect(formatScore(5 / 6)).toBe("0.833");
  });
  it("pads a log range by decades and ignores non-positive values", () => {
    const [lo, hi] = logRange([0, -1, 1, 100], 0.5);
    expect(lo).toBeCloseTo(0.1);
    expect(hi).toBeCloseTo(1000);
    expect(logRange([])).toEqual([0.1, 10]);
    expect(logRange([4, 4])).toEqual([2, 8]);
  });
});

describe("log axis tick labels", () => {
  // One object of 0.9 um3: the range [0.45, 1.8] ticks at 0.5, 0.6, ..., 1; on a 300 px log
  // axis the labels of 0.7, 0.8, 0.9 and 1 ran together as "0.70.80.91".
  const ticks = logTicks(0.45, 1.8);
  const px = (v: number): number =>
    (300 * (Math.log10(v) - Math.log10(0.45))) / (Math.log10(1.8) - Math.log10(0.45));
  it("blanks the labels that would overlap, keeping 1, 2 and 5 first", () => {
    expect(ticks).toEqual([0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    const labels = thinLogLabels(ticks, ticks.map(px));
    expect(labels[0]).toBe("0.5");
    expect(labels[5]).toBe("1");
    expect(labels.filter((l) => l !== "").length).toBeLessThan(ticks.length);
    // No two labels kept closer than their half-widths plus a gap.
    const kept = ticks.map((t, i) => [px(t), labels[i]!] as const).filter(([, l]) => l !== "");
    for (let i = 1; i < kept.length; i++) {
      const [a, la] = kept[i - 1]!;
      const [b, lb] = kept[i]!;
      expect(b - a).toBeGreaterThanOrEqual(((la.length + lb.length) * 7) / 2 + 8);
    }
  });
  it("keeps every label where there is room, and none for uPlot's null ticks", () => {
    const wide = logTicks(0.8, 3000);
    const spread = wide.map((_, i) => i * 60);
    expect(thinLogLabels(wide, spread)).toEqual(wide.map((t) => formatTick(t)));
    expect(logAxisLabels([1, null, 10], (v) => v * 100)).toEqual(["1", "", "10"]);
  });
});

describe("log axis ticks and the sphericity range", () => {
  it("labels a narrow range of volumes with several ticks", () => {
    expect(logTicks(28, 215)).toEqual([50, 100, 200]);
    expect(logTicks(60, 150)).toEqual([60, 70, 80, 90, 100]);
  });

  it("uses 1-2-5 steps over several decades", () => {
    expect(logTicks(0.8, 3000)).toEqual([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]);
    expect(logTicks(5, 2)).toEqual([]);
  });

  it("formats ticks as people read them", () => {
    expect([0.05, 2, 300, 4000, 200000].map(formatTick)).toEqual([
      "0.05",
      "2",
      "300",
      "4,000",
      "2e5",
    ]);
  });

  it("fits the sphericity axis to the data, never below 0 and up to at least 1", () => {
    expect(sphericityRange([0.86, 0.97, 0.91])).toEqual([0.8, 1]);
    expect(sphericityRange([0.02, 1.04])).toEqual([0, 1.04]);
    expect(sphericityRange([])).toEqual([0, 1]);
  });
});
