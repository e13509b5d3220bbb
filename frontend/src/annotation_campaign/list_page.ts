// The campaign list's creation form (annotation/campaign_list.html): dataset and image layer,
// name, instructions, the label schema editor, box size, N, deadline and members; POSTs to
// the API and opens the new campaign's page.

import { api, setCsrfToken, type Schemas } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";

type LabelClass = Schemas["LabelClass"];

export interface ListConfig {
  apiUrl: string;
  /** The caller's datasets, each with its image layers and a first box size for its volume. */
  datasets: {
    slug: string;
    name: string;
    image_layers: string[];
    /** The suggested box size (z, y, x um) per image layer. */
    box_sizes_um: Record<string, number[]>;
  }[];
  dataset: string;
  defaultSchema: LabelClass[];
  defaultBoxSizeUm: number[];
  maxRedundancy: number;
  roles: string[];
  pageUrl: string;
}

export interface ListHooks {
  /** Resolves with the new campaign's id after a successful submit. */
  created(): Promise<number>;
}

/** The form's label schema rows as the API takes them (pure: unit-tested). */
export function schemaFromRows(
  rows: { name: string; label: string; colour: string; key: string }[],
): LabelClass[] {
  return rows
    .map((r) => ({
      name: r.name.trim(),
      label: r.label.trim() || r.name.trim(),
      colour: r.colour,
      key: r.key.trim(),
    }))
    .filter((r) => r.name !== "");
}

/** "2024-05-01T12:00" (a datetime-local input, the browser's time zone) as ISO 8601. */
export function deadlineIso(value: string): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

function cellInput(props: Partial<HTMLInputElement>): HTMLTableCellElement {
  return el("td", {}, [el("input", props)]);
}

export function mountListPage(doc: Document = document): ListHooks {
  const config = jsonScript<ListConfig>("annotation-config", doc);
  const form = doc.getElementById("annotation-form");
  let resolveCreated: (id: number) => void = () => {};
  const created = new Promise<number>((resolve) => {
    resolveCreated = resolve;
  });
  if (!(form instanceof HTMLFormElement)) return { created: () => created };
  const token = form.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  setCsrfToken(token?.value);
  const datasetSelect = byId("f-dataset", HTMLSelectElement, doc);
  const layerSelect = byId("f-layer", HTMLSelectElement, doc);
  const schemaBody = byId("schema-table", HTMLTableElement, doc).tBodies[0];
  const membersBody = byId("members-input", HTMLTableElement, doc).tBodies[0];
  const error = byId("form-error", HTMLElement, doc);
  const submit = byId("f-submit", HTMLButtonElement, doc);

  function fillLayers(): void {
    const dataset = config.datasets.find((d) => d.slug === datasetSelect.value);
    layerSelect.replaceChildren(
      ...(dataset?.image_layers ?? []).map((name) =>
        el("option", { value: name, textContent: name }),
      ),
    );
  }
  datasetSelect.addEventListener("change", fillLayers);
  fillLayers();

  function removable(row: HTMLTableRowElement): HTMLTableRowElement {
    const button = el("button", {
      type: "button",
      className: "link-button",
      textContent: "Remove",
    });
    button.addEventListener("click", () => row.remove());
    row.append(el("td", {}, [button]));
    return row;
  }
  function addClass(c: Partial<LabelClass> = {}): void {
    const row = el("tr", { className: "schema-row" }, [
      cellInput({ className: "c-name", value: c.name ?? "", maxLength: 40, required: true }),
      cellInput({ className: "c-label", value: c.label ?? "", maxLength: 100 }),
      cellInput({ className: "c-colour", type: "color", value: c.colour ?? "#00ccff" }),
      cellInput({ className: "c-key", value: c.key ?? "", maxLength: 1, size: 2, required: true }),
    ]);
    schemaBody?.append(removable(row));
  }
  function addMember(username = "", role = "annotator"): void {
    const select = el(
      "select",
      { className: "m-role" },
      config.roles.map((r) => el("option", { value: r, textContent: r, selected: r === role })),
    );
    const row = el("tr", { className: "member-row" }, [
      cellInput({ className: "m-username", value: username, maxLength: 150 }),
      el("td", {}, [select]),
    ]);
    membersBody?.append(removable(row));
  }
  for (const c of config.defaultSchema) addClass(c);
  byId("schema-add", HTMLButtonElement, doc).addEventListener("click", () => addClass());
  byId("member-add", HTMLButtonElement, doc).addEventListener("click", () => addMember());
  // The box size follows the chosen dataset and image layer (a quarter of the layer's volume
  // along each axis, at most 50 um) until the person types one.
  const boxInputs = ["z", "y", "x"].map((axis) => byId(`f-box-${axis}`, HTMLInputElement, doc));
  let boxTyped = false;
  for (const input of boxInputs) input.addEventListener("input", () => (boxTyped = true));
  function fillBoxSize(): void {
    if (boxTyped) return;
    const dataset = config.datasets.find((d) => d.slug === datasetSelect.value);
    const size = dataset?.box_sizes_um[layerSelect.value] ?? config.defaultBoxSizeUm;
    boxInputs.forEach((input, i) => (input.value = String(size[i] ?? config.defaultBoxSizeUm[i])));
  }
  datasetSelect.addEventListener("change", fillBoxSize);
  layerSelect.addEventListener("change", fillBoxSize);
  fillBoxSize();

  const value = (row: Element, selector: string): string =>
    row.querySelector<HTMLInputElement | HTMLSelectElement>(selector)?.value ?? "";

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.hidden = true;
    const schema = schemaFromRows(
      [...(schemaBody?.rows ?? [])].map((row) => ({
        name: value(row, ".c-name"),
        label: value(row, ".c-label"),
        colour: value(row, ".c-colour"),
        key: value(row, ".c-key"),
      })),
    );
    const members = [...(membersBody?.rows ?? [])]
      .map((row) => ({ username: value(row, ".m-username").trim(), role: value(row, ".m-role") }))
      .filter((m) => m.username !== "");
    const instructions = byId("f-instructions", HTMLTextAreaElement, doc).value;
    submit.disabled = true;
    api
      .post("/api/v1/annotation/campaigns/", {
        body: {
          dataset: datasetSelect.value,
          image_layer: layerSelect.value,
          name: byId("f-name", HTMLInputElement, doc).value,
          instructions,
          label_schema: schema,
          box_size_um: ["f-box-z", "f-box-y", "f-box-x"].map((id) =>
            Number(byId(id, HTMLInputElement, doc).value),
          ),
          redundancy: Number(byId("f-redundancy", HTMLInputElement, doc).value),
          deadline: deadlineIso(byId("f-deadline", HTMLInputElement, doc).value),
          match_tolerance_um: 3,
          painted: byId("f-painted", HTMLInputElement, doc).checked,
          members,
        },
      })
      .then(
        (campaign) => {
          resolveCreated(campaign.id);
          doc.defaultView?.location.assign(`${config.pageUrl}${campaign.id}/`);
        },
        (e: unknown) => {
          error.textContent = e instanceof Error ? e.message : String(e);
          error.hidden = false;
          submit.disabled = false;
        },
      );
  });
  return { created: () => created };
}
