// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";

import { detailText } from "../src/annotation_campaign/audit_page";
import { groundTruthText, mayAcceptConsensus } from "../src/annotation_campaign/campaign_page";
import {
  type Coverage,
  type CoverageBox,
  SUGGESTED_COLOUR,
  boxTitle,
  drawCoverage,
  rectAttributes,
} from "../src/annotation_campaign/coverage";
import { deadlineIso, schemaFromRows } from "../src/annotation_campaign/list_page";

const styles = {
  todo: { label: "To do", colour: "#9e9e9e" },
  approved: { label: "Approved", colour: "#4caf50" },
};

describe("coverage map", () => {
  it("draws a box's rectangle in its state's colour, dashed off the thumbnail's slice", () => {
    const attrs = rectAttributes(
      {
        id: 3,
        name: "b",
        state: "approved",
        rect: [10, 20, 0.2, 30],
        crosses_slice: false,
        suggested: null,
      },
      styles,
    );
    expect(attrs).toMatchObject({ x: "10", y: "20", width: "1", height: "30", fill: "#4caf50" });
    expect(attrs["stroke-dasharray"]).toBe("3 2");
    expect(attrs["data-box"]).toBe("3");
    expect(attrs["data-suggested"]).toBeUndefined();
  });

  it("outlines the boxes a model suggested, with its uncertainty in the tooltip", () => {
    const box: CoverageBox = {
      id: 4,
      name: "suggest-1",
      state: "todo",
      rect: [0, 0, 8, 8],
      crosses_slice: true,
      suggested: 0.7219,
    };
    const attrs = rectAttributes(box, styles);
    expect(attrs).toMatchObject({ stroke: SUGGESTED_COLOUR, "stroke-width": "3" });
    expect(attrs["data-suggested"]).toBe("0.722");
    expect(attrs.fill).toBe("#9e9e9e"); // still filled by its state
    expect(boxTitle(box, styles)).toBe(
      "suggest-1: To do, suggested by the model (uncertainty 0.72 bits)",
    );
  });

  it("draws one rect per box over the thumbnail", () => {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const image = document.createElement("img");
    const coverage: Coverage = {
      thumbnail_url: "/datasets/d/thumbnail.png",
      width: 256,
      height: 128,
      shape: [10, 100, 200],
      slice_z: 5,
      total: 2,
      truncated: false,
      counts: { todo: 2 },
      boxes: [
        {
          id: 1,
          name: "a",
          state: "todo",
          rect: [0, 0, 128, 128],
          crosses_slice: true,
          suggested: null,
        },
        {
          id: 2,
          name: "b",
          state: "todo",
          rect: [128, 0, 128, 128],
          crosses_slice: true,
          suggested: null,
        },
      ],
    };
    expect(drawCoverage(svg, image, coverage, styles)).toBe(2);
    expect(svg.querySelectorAll("rect")).toHaveLength(2);
    expect(svg.getAttribute("viewBox")).toBe("0 0 256 128");
    expect(image.getAttribute("src")).toBe("/datasets/d/thumbnail.png");
    expect(svg.querySelector("title")?.textContent).toBe("a: To do");
    // A suggested box is drawn last (on top of the boxes projected onto the same place).
    coverage.boxes = [{ ...coverage.boxes[0]!, suggested: 0.5 }, coverage.boxes[1]!];
    drawCoverage(svg, image, coverage, styles);
    expect([...svg.querySelectorAll("rect")].map((r) => r.dataset["box"])).toEqual(["2", "1"]);
    expect(svg.querySelector("rect:last-child")!.getAttribute("stroke-dasharray")).toBe("none");
  });
});

describe("creation form", () => {
  it("keeps named classes and labels them by name when no label is given", () => {
    expect(
      schemaFromRows([
        { name: " nucleus ", label: "", colour: "#ffcc00", key: "1" },
        { name: "", label: "Nothing", colour: "#000000", key: "2" },
      ]),
    ).toEqual([{ name: "nucleus", label: "nucleus", colour: "#ffcc00", key: "1" }]);
  });

  it("reads the deadline as ISO 8601, or none", () => {
    expect(deadlineIso("")).toBeNull();
    expect(deadlineIso("not a date")).toBeNull();
    expect(deadlineIso("2030-01-02T03:04")).toMatch(/^2030-01-0\dT\d\d:04:00\.000Z$/);
  });
});

describe("audit log", () => {
  it("writes an entry's detail as key=value pairs", () => {
    expect(detailText({ user: "a1", role: "annotator", count: 3, fields: ["name"] })).toBe(
      'user=a1, role=annotator, count=3, fields=["name"]',
    );
  });
});

describe("boxes table: ground truth", () => {
  const manager = { manager: true, redundancy: 2, quorum: 2 };

  it("says what a box's ground truth is", () => {
    expect(groundTruthText({ consensus_points: 3, n_approved: 2 })).toBe("consensus, 3 points");
    expect(groundTruthText({ consensus_points: 1, n_approved: 2 })).toBe("consensus, 1 point");
    expect(groundTruthText({ consensus_points: 0, n_approved: 2 })).toBe("consensus, 0 points");
    expect(groundTruthText({ consensus_points: null, n_approved: 1 })).toBe("approved work");
    expect(groundTruthText({ consensus_points: null, n_approved: 0 })).toBe("–");
  });

  it("offers the consensus to managers once a quorum of the box's tasks is approved", () => {
    expect(mayAcceptConsensus({ n_approved: 2 }, manager)).toBe(true);
    expect(mayAcceptConsensus({ n_approved: 1 }, manager)).toBe(false);
    expect(mayAcceptConsensus({ n_approved: 2 }, { ...manager, manager: false })).toBe(false);
    expect(mayAcceptConsensus({ n_approved: 1 }, { ...manager, redundancy: 1, quorum: 1 })).toBe(
      false,
    );
  });
});
