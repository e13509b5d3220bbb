// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";

import { labelTruthText, truthChoices } from "../src/annotation_campaign/campaign_page";
import {
  labelBoxBars,
  labelBoxRows,
  labelPairBars,
  labelPairRows,
} from "../src/annotation_dashboard/page";
import {
  boxPointGlobal,
  consensusLayer,
  labelPairCells,
  unmatchedText,
} from "../src/annotation_review/layers";

const work = (annotator: string, state: string, assignment: number, n_objects = 2) => ({
  annotator,
  assignment,
  slot: assignment,
  state,
  version: 3,
  n_objects,
  foreground_voxels: 100,
});

describe("painted ground truth choices", () => {
  it("offers the consensus at a majority once every volume is approved", () => {
    const choices = truthChoices([
      work("a1", "approved", 1),
      work("a2", "approved", 2, 1),
      work("a3", "approved", 3),
    ]);
    expect(choices.consensus).toEqual({ available: true, quorum: 2, max: 3, reason: "" });
    expect(choices.volumes.map((v) => v.label)).toEqual([
      "a1's volume (2 objects)",
      "a2's volume (1 object)",
      "a3's volume (2 objects)",
    ]);
  });

  it("says whom to review first, and offers only approved volumes", () => {
    const choices = truthChoices([work("a1", "approved", 1), work("a2", "submitted", 2)]);
    expect(choices.consensus.available).toBe(false);
    expect(choices.consensus.reason).toBe("review a2 first");
    expect(choices.volumes.map((v) => v.assignment)).toEqual([1]);
    const alone = truthChoices([work("a1", "approved", 1)]);
    expect(alone.consensus.reason).toContain("two or more");
  });

  it("names the accepted truth, else the fallback", () => {
    expect(labelTruthText({ label_truth: "consensus (quorum 2), 3 objects", n_approved: 2 })).toBe(
      "consensus (quorum 2), 3 objects",
    );
    expect(labelTruthText({ label_truth: null, n_approved: 1 })).toBe("first approved volume");
    expect(labelTruthText({ label_truth: null, n_approved: 0 })).toBe("–");
  });
});

describe("painted agreement on the review page", () => {
  it("writes a pair's figures as the panel's cells", () => {
    const cells = labelPairCells({
      reference: "a1",
      other: "a2",
      matched: 2,
      n_reference: 3,
      n_other: 3,
      precision: 0.6667,
      recall: 0.6667,
      f1: 0.6667,
      dice: 0.8247,
      mean_matched_iou: null,
    });
    expect(cells).toEqual(["a1 / a2", "2 of 3 / 3", "0.667", "0.667", "0.667", "0.825", "–"]);
  });

  it("lists an object left out with where it is and why", () => {
    expect(
      unmatchedText({
        annotator: "a2",
        id: 30,
        voxels: 64,
        centroid: [13.5, 3.4, 51.6],
        support: 1,
      }),
    ).toBe("a2 #30: 64 voxels at 14 3 52 (box z y x), alone");
    expect(
      unmatchedText({ annotator: "a1", id: 2, voxels: 9, centroid: [1, 2, 3], support: 2 }),
    ).toContain("matched by 2 annotators, below the quorum");
  });

  it("places a box-local centroid in the viewer's dimensions", () => {
    expect(boxPointGlobal([0, 8, 16], [13.5, 3.5, 51.5], ["x", "y", "z"])).toEqual([
      67.5, 11.5, 13.5,
    ]);
  });

  it("makes the consensus a segmentation layer with every object selected", () => {
    const layer = consensusLayer("zarr2://h/label-consensus/q2-1v1-2v1/", [1, 2, 3]);
    expect(layer).toMatchObject({
      type: "segmentation",
      name: "consensus",
      source: "zarr2://h/label-consensus/q2-1v1-2v1/",
      segments: ["1", "2", "3"],
    });
  });
});

describe("painted agreement on the dashboard", () => {
  it("plots F1 per box and Dice per annotator pair", () => {
    expect(labelBoxBars([{ name: "b1", mean_f1: 0.62 }], "#000")).toEqual([
      { label: "b1", value: 0.62, colour: "#000" },
    ]);
    expect(labelPairBars([{ reference: "a1", other: "a2", dice: null }], "#000")).toEqual([
      { label: "a1 / a2", value: null, colour: "#000" },
    ]);
  });
});

describe("the dashboard's painted agreement tables", () => {
  it("writes one row per annotator pair with every figure, and one per box", () => {
    const pair = {
      reference: "a1",
      other: "a2",
      boxes: 3,
      matched: 17,
      precision: 0.8947,
      recall: 0.85,
      f1: 0.8718,
      dice: 0.9132,
      mean_matched_iou: null,
    };
    expect(labelPairRows([pair])).toEqual([
      ["a1 / a2", "3", "17", "0.89", "0.85", "0.87", "0.91", "–"],
    ]);
    expect(labelBoxRows([{ name: "b1", mean_f1: 0.5, mean_dice: null }])).toEqual([
      ["b1", "0.50", "–"],
    ]);
  });
});
