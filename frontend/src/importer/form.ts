// The import form's request: checked in the browser first (missing file or name, voxel sizes,
// the upload limit) so the person hears about it before minutes of uploading.

import { formatBytes } from "../lib/format";

export interface LabelInput {
  file: File | undefined;
  name: string;
}

export interface ImportInput {
  file: File | undefined;
  name: string;
  description: string;
  visibility: string;
  /** z, y, x as typed (may be empty). */
  voxel: [string, string, string];
  unit: string;
  labels: LabelInput[];
  /** The server's upload limit in bytes (0: none). */
  maxBytes: number;
}

/** The dataset name a volume file suggests: "cells.ome.tif" -> "cells". */
export function nameFromVolumeFile(filename: string): string {
  return filename.replace(/\.(ome\.)?(tiff?|npy|zip|zarr)$/i, "");
}

/** The label name a label file suggests: "nuclei v2.tif" -> "nuclei_v2". */
export function nameFromLabelFile(filename: string): string {
  return (filename.split(".")[0] ?? "").replace(/[^A-Za-z0-9_-]+/g, "_");
}

export const VOXEL_SIZE_MESSAGE =
  "Give the voxel sizes z, y, x (y and x alone for a 2D image) as positive numbers, or none.";

/** The multipart body for POST /api/v1/imports/; throws an Error with a message for a person. */
export function buildImportForm(input: ImportInput): FormData {
  const data = new FormData();
  if (!input.file) throw new Error("Choose a volume file to import.");
  const name = input.name.trim();
  if (!name) throw new Error("Give the dataset a name.");
  data.append("file", input.file);
  data.append("name", name);
  data.append("description", input.description);
  data.append("visibility", input.visibility);

  const voxel = input.voxel.map((v) => v.trim());
  const given = voxel.filter((v) => v !== "");
  if (given.length) {
    // A 2D image has no z: y and x alone are its voxel size (the server checks the count
    // against the file's spatial axes).
    const flat = given.length === 2 && voxel[0] === "";
    if ((given.length !== 3 && !flat) || given.some((v) => !(Number(v) > 0))) {
      throw new Error(VOXEL_SIZE_MESSAGE);
    }
    data.append("voxel_size", given.join(","));
    data.append("unit", input.unit);
  }

  let total = input.file.size;
  for (const label of input.labels) {
    if (!label.file) continue;
    const labelName = label.name.trim();
    if (!labelName) throw new Error(`Name the label image ${label.file.name}.`);
    data.append("labels", label.file);
    data.append("label_names", labelName);
    total += label.file.size;
  }
  if (input.maxBytes && total > input.maxBytes) {
    throw new Error(
      `The files (${formatBytes(total)}) exceed the upload limit of ${formatBytes(input.maxBytes)}.`,
    );
  }
  return data;
}
