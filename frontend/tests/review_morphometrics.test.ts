// The review page's painted objects (annotation_review/morphometrics.ts): table cells,
// provenance, the scatter's points and the summary line.
import { describe, expect, it } from "vitest";

import {
  type LabelObject,
  PROVENANCE_COLOURS,
  centroidVoxel,
  median,
  objectCells,
  objectsSummary,
  provenanceCounts,
  provenanceText,
  scatterPoints,
} from "../src/annotation_review/morphometrics";

function object(id: number, extra: Partial<LabelObject> = {}): LabelObject {
  return {
    segment_id: id,
    voxels: 100,
    volume_um3: 12.345678,
    surface_area_um2: 30.5,
    sphericity: 0.876543,
    area_um2: null,
    centroid_z: 10.5,
    centroid_y: 20,
    centroid_x: 30.25,
    centroid_z_um: 4.2,
    centroid_y_um: 4,
    centroid_x_um: 6.05,
    provenance: { source: "manual" },
    ...extra,
  };
}

describe("painted objects in the review page", () => {
  it("gives a 2D image's objects their area: one figure, and the median area", () => {
    const flat = (id: number, area: number) =>
      object(id, { volume_um3: null, surface_area_um2: null, sphericity: null, area_um2: area });
    expect(objectCells(flat(3, 51.234))).toEqual(["3", "51.2", "manual"]);
    const summary = objectsSummary([flat(1, 10), flat(2, 30), flat(3, 20)], 4);
    expect(summary).toBe("version 4: 3 object(s), median area 20 µm²");
    expect(scatterPoints([flat(1, 10)])).toEqual([]); // no volume, no sphericity: no point
  });

  it("writes a row: id, volume, surface, sphericity at 3 figures, provenance", () => {
    expect(objectCells(object(7))).toEqual(["7", "12.3", "30.5", "0.877", "manual"]);
    const none = object(8, { surface_area_um2: null, sphericity: null, provenance: null });
    expect(objectCells(none)).toEqual(["8", "12.3", "–", "–", "–"]);
    const proposed = object(9, { provenance: { source: "proposal", proposal_source: "model" } });
    expect(provenanceText(proposed)).toBe("proposal (model)");
    const named = object(10, {
      provenance: { source: "click", proposal_source: "model", model: "model v3" },
    });
    expect(provenanceText(named)).toBe("click (model v3)");
    const filled = object(11, {
      provenance: { source: "manual", interpolated: { xy: [13, 14, 15, 17], yz: [] } },
    });
    expect(provenanceText(filled)).toBe("manual, interpolated xy 14–16, 18");
  });

  it("shows an object at its centroid voxel (z, y, x)", () => {
    expect(centroidVoxel(object(1))).toEqual([10.5, 20, 30.25]);
  });

  it("plots volume against sphericity by provenance, leaving out what has no sphericity", () => {
    const objects = [
      object(1),
      object(2, { volume_um3: 3, sphericity: 0.5, provenance: { source: "click" } }),
      object(3, { sphericity: null }), // one voxel: no surface
      object(4, { volume_um3: 0 }), // no place on a log axis
      object(5, { volume_um3: 40, sphericity: 0.9, provenance: null }),
    ];
    expect(scatterPoints(objects)).toEqual([
      { x: 12.345678, y: 0.876543, colour: PROVENANCE_COLOURS.manual, id: 1 },
      { x: 3, y: 0.5, colour: PROVENANCE_COLOURS.click, id: 2 },
      { x: 40, y: 0.9, colour: PROVENANCE_COLOURS.unknown, id: 5 },
    ]);
    expect(provenanceCounts(objects)).toEqual([
      ["manual", 3],
      ["click", 1],
      ["unknown", 1],
    ]);
  });

  it("sums the objects up with medians", () => {
    expect(median([3, null, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([null])).toBeNull();
    const objects = [object(1, { volume_um3: 10 }), object(2, { volume_um3: 30 })];
    expect(objectsSummary(objects, 3)).toBe(
      "version 3: 2 object(s), median 20 µm³, sphericity 0.877",
    );
    expect(objectsSummary([], 0)).toBe("version 0: no painted objects");
  });
});
