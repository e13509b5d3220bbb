import { describe, expect, it } from "vitest";
import type { Job } from "../src/lib/api";
import { formatBytes } from "../src/lib/format";
import {
  buildImportForm,
  nameFromLabelFile,
  nameFromVolumeFile,
  type ImportInput,
} from "../src/importer/form";
import { jobView, uploadProgress } from "../src/importer/progress";

function job(fields: Partial<Job>): Job {
  return {
    id: 1,
    kind: "import",
    status: "queued",
    state: "queued",
    attempts: 0,
    heartbeat: null,
    stage: "",
    done: 0,
    total: 0,
    progress: 0,
    error: "",
    name: "",
    dataset: null,
    viewer_url: null,
    created: "",
    updated: "",
    started: null,
    finished: null,
    ...fields,
  };
}

describe("captions", () => {
  it("formats sizes in powers of 1024", () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 ** 3, 3 * 1024 ** 5].map(formatBytes)).toEqual([
      "0 B",
      "1023 B",
      "1.0 KB",
      "1.5 KB",
      "5.0 GB",
      "3072.0 TB",
    ]);
  });

  it("shows upload progress in percent and bytes", () => {
    expect(uploadProgress(512 * 1024, 2 * 1024 ** 2)).toEqual({
      value: 25,
      caption: "Uploading… 25 % (512.0 KB of 2.0 MB)",
    });
  });

  it("shows each job status as the page did", () => {
    expect(jobView(job({ status: "queued" }))).toEqual({
      value: null,
      caption: "Queued: waiting for a worker…",
      outcome: null,
    });
    expect(
      jobView(
        job({ status: "running", stage: "Writing pyramid", done: 2, total: 5, progress: 0.4 }),
      ),
    ).toEqual({ value: 40, caption: "Writing pyramid — 40 % (2 of 5)", outcome: null });
    expect(jobView(job({ status: "running" }))).toEqual({
      value: null,
      caption: "Working",
      outcome: null,
    });
    expect(
      jobView(job({ status: "succeeded", name: "Spheres", viewer_url: "/datasets/spheres/" })),
    ).toEqual({
      value: 100,
      caption: "Done.",
      outcome: { kind: "succeeded", name: "Spheres", viewerUrl: "/datasets/spheres/" },
    });
    expect(jobView(job({ status: "succeeded", dataset: "spheres" })).outcome).toMatchObject({
      name: "spheres",
    });
    expect(jobView(job({ status: "failed", error: "broken.tif is not a TIFF" }))).toEqual({
      value: undefined,
      caption: "Failed.",
      outcome: { kind: "failed", message: "broken.tif is not a TIFF" },
    });
    expect(jobView(job({ status: "failed" })).outcome).toEqual({
      kind: "failed",
      message: "The import failed.",
    });
    expect(jobView(job({ status: "cancelled" })).outcome).toEqual({
      kind: "cancelled",
      message: "The import was cancelled; nothing was kept.",
    });
  });

  it("says so while a job waits to be retried after its worker stopped", () => {
    const view = jobView(job({ status: "running", state: "retrying", done: 3, total: 5 }));
    expect(view).toEqual({
      value: null,
      caption: "Retrying: the worker stopped, the import starts over…",
      outcome: null,
    });
  });

  it("keeps polling a status it does not know", () => {
    const view = jobView(job({ status: "retrying" as Job["status"], stage: "Waiting to retry" }));
    expect(view.outcome).toBeNull();
    expect(view.caption).toBe("Waiting to retry");
  });
});

describe("the import form", () => {
  const volume = new File(["x".repeat(100)], "cells.ome.tif");
  const base: ImportInput = {
    file: volume,
    name: " Cells ",
    description: "d",
    visibility: "private",
    voxel: ["", "", ""],
    unit: "nanometer",
    labels: [],
    maxBytes: 0,
  };

  it("suggests names from file names", () => {
    expect(nameFromVolumeFile("cells.ome.tif")).toBe("cells");
    expect(nameFromVolumeFile("stack.TIFF")).toBe("stack");
    expect(nameFromVolumeFile("store.zarr.zip")).toBe("store.zarr");
    expect(nameFromVolumeFile("notes.txt")).toBe("notes.txt");
    expect(nameFromLabelFile("nuclei v2.tif")).toBe("nuclei_v2");
  });

  it("builds the multipart body", () => {
    const label = new File(["y"], "nuclei.tif");
    const data = buildImportForm({
      ...base,
      voxel: ["0.4", " 0.2", "0.2"],
      unit: "micrometer",
      labels: [
        { file: label, name: " nuclei " },
        { file: undefined, name: "ignored" },
      ],
    });
    expect([...data.keys()]).toEqual([
      "file",
      "name",
      "description",
      "visibility",
      "voxel_size",
      "unit",
      "labels",
      "label_names",
    ]);
    expect(data.get("name")).toBe("Cells");
    expect(data.get("voxel_size")).toBe("0.4,0.2,0.2");
    expect(data.get("unit")).toBe("micrometer");
    expect(data.getAll("label_names")).toEqual(["nuclei"]);
    expect(buildImportForm(base).has("voxel_size")).toBe(false);
    expect(buildImportForm(base).has("unit")).toBe(false);
  });

  it("refuses what the server would refuse, with a message for a person", () => {
    expect(() => buildImportForm({ ...base, file: undefined })).toThrow(
      "Choose a volume file to import.",
    );
    expect(() => buildImportForm({ ...base, name: "  " })).toThrow("Give the dataset a name.");
    for (const voxel of [
      ["1", "", ""],
      ["1", "", "1"],
      ["", "", "1"],
      ["1", "0", "1"],
      ["1", "-2", "1"],
      ["1", "a", "1"],
      ["", "0", "1"],
    ] as const) {
      expect(() => buildImportForm({ ...base, voxel: [...voxel] })).toThrow(
        "Give the voxel sizes z, y, x (y and x alone for a 2D image) as positive numbers, or none.",
      );
    }
    // A 2D image: y and x alone.
    expect(buildImportForm({ ...base, voxel: ["", "100", " 100"] }).get("voxel_size")).toBe(
      "100,100",
    );
    expect(() =>
      buildImportForm({ ...base, labels: [{ file: new File(["y"], "l.tif"), name: "" }] }),
    ).toThrow("Name the label image l.tif.");
    expect(() =>
      buildImportForm({
        ...base,
        maxBytes: 64,
        labels: [{ file: new File(["y"], "l.tif"), name: "l" }],
      }),
    ).toThrow("The files (101 B) exceed the upload limit of 64 B.");
  });
});
