// The coverage map: the campaign's boxes as SVG rectangles over the dataset's thumbnail, in the
// thumbnail's pixels (the server projects each box along z onto the thumbnail's plane: see
// webapp/annotation/coverage.py), coloured by the box's state.

import type { Schemas } from "../lib/api";

export type Coverage = Schemas["Coverage"];
export type CoverageBox = Schemas["CoverageBox"];

export interface StateStyle {
  label: string;
  colour: string;
}

const SVG = "http://www.w3.org/2000/svg";

/** The attributes of one box's rectangle (pure: unit-tested). */
export function rectAttributes(
  box: CoverageBox,
  styles: Readonly<Record<string, StateStyle>>,
): Record<string, string> {
  const [x = 0, y = 0, width = 0, height = 0] = box.rect;
  const colour = styles[box.state]?.colour ?? "#ffffff";
  return {
    x: String(x),
    y: String(y),
    // A box thinner than a pixel of the thumbnail is still drawn a pixel wide.
    width: String(Math.max(width, 1)),
    height: String(Math.max(height, 1)),
    fill: colour,
    "fill-opacity": "0.25",
    stroke: colour,
    "stroke-width": "1",
    "vector-effect": "non-scaling-stroke",
    "data-box": String(box.id),
    "data-state": box.state,
    ...(box.crosses_slice ? {} : { "stroke-dasharray": "3 2" }),
    // A box a model suggested (Suggest next boxes) gets a thick outline of its own colour.
    ...(box.suggested == null
      ? {}
      : {
          stroke: SUGGESTED_COLOUR,
          "stroke-width": "3",
          "stroke-dasharray": "none", // always solid: the thick outline is the mark
          "data-suggested": box.suggested.toFixed(3),
        }),
  };
}

/** The outline of the boxes a model suggested (the legend's swatch too). */
export const SUGGESTED_COLOUR = "#7b1fa2"; // purple: no state's colour

/** A box's tooltip: its name and state, and the model's uncertainty there if it suggested it. */
export function boxTitle(box: CoverageBox, styles: Readonly<Record<string, StateStyle>>): string {
  const state = styles[box.state]?.label ?? box.state;
  return box.suggested == null
    ? `${box.name}: ${state}`
    : `${box.name}: ${state}, suggested by the model (uncertainty ${box.suggested.toFixed(2)} bits)`;
}

/** Redraws `svg` (and the thumbnail `image`) for `coverage`; returns the rectangles drawn. */
export function drawCoverage(
  svg: SVGSVGElement,
  image: HTMLImageElement,
  coverage: Coverage,
  styles: Readonly<Record<string, StateStyle>>,
): number {
  const doc = svg.ownerDocument;
  svg.setAttribute("viewBox", `0 0 ${coverage.width} ${coverage.height}`);
  // The page's style sheet sizes the map; the SVG keeps the thumbnail's aspect.
  svg.style.aspectRatio = `${coverage.width} / ${coverage.height}`;
  if (coverage.thumbnail_url) {
    if (image.getAttribute("src") !== coverage.thumbnail_url) image.src = coverage.thumbnail_url;
    image.width = coverage.width;
    image.height = coverage.height;
    image.hidden = false;
  }
  const nodes: SVGRectElement[] = [];
  // Suggested boxes last, so their outline and tooltip are on top of the boxes above or below
  // them (every box is projected along z onto one plane).
  const ordered = [
    ...coverage.boxes.filter((b) => b.suggested == null),
    ...coverage.boxes.filter((b) => b.suggested != null),
  ];
  for (const box of ordered) {
    const rect = doc.createElementNS(SVG, "rect");
    for (const [name, value] of Object.entries(rectAttributes(box, styles))) {
      rect.setAttribute(name, value);
    }
    const title = doc.createElementNS(SVG, "title");
    title.textContent = boxTitle(box, styles);
    rect.append(title);
    nodes.push(rect);
  }
  svg.replaceChildren(...nodes);
  svg.dataset["boxes"] = String(nodes.length);
  return nodes.length;
}
