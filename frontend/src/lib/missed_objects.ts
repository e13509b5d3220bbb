// A campaign's missed-object points (objects the segmentation missed), as the queue and gallery
// pages show them: read all through the API, dropped and removed one at a time behind the page's
// other writes, counted, and the latest listed with a remove button. Each page draws the points
// its own way (the queue: an annotation layer; the gallery: markers on its cards) in `onChange`.

import { api, type Schemas } from "./api";
import { el } from "./dom";

export type MissedPoint = Schemas["MissedObject"];
/** A position for a new point: voxels of the layer at full resolution, voxel i's centre at i. */
export type MissedPosition = Schemas["MissedObjectCreate"];

/** How many of the latest points the list shows. */
export const MISSED_LIST_LENGTH = 8;

function shortNumber(value: number): string {
  return Number.isFinite(value) ? Number(value.toPrecision(4)).toString() : "–";
}

/** "x 12.5, y 3, z 40" */
export function missedPositionText(point: { x: number; y: number; z: number }): string {
  return `x ${shortNumber(point.x)}, y ${shortNumber(point.y)}, z ${shortNumber(point.z)}`;
}

export interface MissedObjectsOptions {
  campaignId: number;
  /** Where the count goes (optional). */
  count?: HTMLElement | null;
  /** The list of the latest points with their remove buttons (optional). */
  list?: HTMLElement | null;
  /** Runs a write after the page's earlier ones (the page's `SerialWork`). */
  serial: <T>(task: () => Promise<T>) => Promise<T>;
  status: (text: string) => void;
  showError: (error: unknown) => void;
  /** The points changed (read again): the page redraws them and its counters. */
  onChange: () => void;
}

export class MissedObjects {
  private current: MissedPoint[] = [];

  constructor(private readonly options: MissedObjectsOptions) {}

  /** The campaign's points as last read, oldest first. */
  get points(): MissedPoint[] {
    return this.current;
  }

  /** Reads every point again (pages of 1000) and redraws. */
  async reload(): Promise<void> {
    const all: MissedPoint[] = [];
    try {
      for (let offset = 0; ; offset += 1000) {
        const page = await api.get("/api/v1/proofreading/campaigns/{campaign_id}/missed/", {
          path: { campaign_id: this.options.campaignId },
          query: { limit: 1000, offset },
        });
        all.push(...page.results);
        if (!page.next || page.results.length === 0) break;
      }
      this.current = all;
      this.draw();
    } catch (error) {
      this.options.showError(error);
    }
  }

  /** Drops a point (after the page's earlier writes); `where` ends the status line's first
   * part ("at the mouse"). Resolves with the stored point, or null when it was refused. */
  add(position: MissedPosition, where: string): Promise<MissedPoint | null> {
    return this.options.serial(async () => {
      let made: MissedPoint | null = null;
      try {
        made = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/missed/", {
          path: { campaign_id: this.options.campaignId },
          body: position,
        });
        this.options.status(`Missed object marked ${where}: ${missedPositionText(made)}.`);
      } catch (error) {
        this.options.showError(error);
      }
      await this.reload();
      return made;
    });
  }

  /** Removes a point (whoever dropped it, or a manager). */
  remove(id: number): Promise<void> {
    return this.options.serial(async () => {
      try {
        await api.delete("/api/v1/proofreading/campaigns/{campaign_id}/missed/{missed_id}/", {
          path: { campaign_id: this.options.campaignId, missed_id: id },
        });
        this.options.status(`Missed-object point ${id} removed.`);
      } catch (error) {
        this.options.showError(error);
      }
      await this.reload();
    });
  }

  private draw(): void {
    const { count, list } = this.options;
    if (count) count.textContent = String(this.current.length);
    if (list) {
      const latest = this.current.slice(-MISSED_LIST_LENGTH).reverse();
      list.replaceChildren(...latest.map((point) => this.row(point)));
    }
    this.options.onChange();
  }

  private row(point: MissedPoint): HTMLLIElement {
    const where = [point.x, point.y, point.z].map(shortNumber).join(", ");
    const remove = el("button", {
      type: "button",
      textContent: "×",
      title: `Remove point ${point.id}`,
    });
    remove.dataset["missed"] = String(point.id);
    remove.addEventListener("click", () => void this.remove(point.id));
    return el("li", {}, [
      el("span", { textContent: `${point.created_by}: ${where}` }),
      el("time", {
        dateTime: point.created,
        textContent: new Date(point.created).toLocaleTimeString(),
      }),
      remove,
    ]);
  }
}
