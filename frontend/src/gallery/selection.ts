// The gallery's selection over one page of cards: click selects one card (and sets the anchor),
// Shift+click selects the range from the anchor, Ctrl/Cmd+click adds or removes one card,
// "select page" takes every card still to decide. Decided cards cannot be selected.

export interface ClickModifiers {
  shift?: boolean;
  toggle?: boolean;
}

export class PageSelection {
  private ids: number[] = [];
  private readonly chosen = new Set<number>();
  private readonly locked = new Set<number>();
  private anchor: number | null = null;

  /** A new page: its item ids in display order; the selection starts empty. */
  reset(ids: readonly number[]): void {
    this.ids = [...ids];
    this.chosen.clear();
    this.locked.clear();
    this.anchor = null;
  }

  /** An item that was decided: it leaves the selection and cannot be selected again. */
  lock(id: number): void {
    this.locked.add(id);
    this.chosen.delete(id);
  }

  isLocked(id: number): boolean {
    return this.locked.has(id);
  }

  click(id: number, modifiers: ClickModifiers = {}): void {
    const index = this.ids.indexOf(id);
    if (index < 0 || this.locked.has(id)) return;
    if (modifiers.shift && this.anchor !== null) {
      const from = this.ids.indexOf(this.anchor);
      const [lo, hi] = from <= index ? [from, index] : [index, from];
      if (!modifiers.toggle) this.chosen.clear();
      for (const other of this.ids.slice(lo, hi + 1)) {
        if (!this.locked.has(other)) this.chosen.add(other);
      }
      return;
    }
    if (modifiers.toggle) {
      if (this.chosen.has(id)) this.chosen.delete(id);
      else this.chosen.add(id);
    } else {
      this.chosen.clear();
      this.chosen.add(id);
    }
    this.anchor = id;
  }

  /** Every card of the page still to decide; if they all are selected already, none. */
  togglePage(): void {
    const open = this.ids.filter((id) => !this.locked.has(id));
    const all = open.length > 0 && open.every((id) => this.chosen.has(id));
    this.chosen.clear();
    if (!all) for (const id of open) this.chosen.add(id);
  }

  clear(): void {
    this.chosen.clear();
  }

  has(id: number): boolean {
    return this.chosen.has(id);
  }

  /** The selected ids in page order. */
  selected(): number[] {
    return this.ids.filter((id) => this.chosen.has(id));
  }

  /** How many cards of the page are still to decide. */
  get open(): number {
    return this.ids.filter((id) => !this.locked.has(id)).length;
  }

  get size(): number {
    return this.ids.length;
  }
}

export type GalleryAction =
  | { kind: "verdict"; verdict: string }
  | { kind: "selectPage" }
  | { kind: "clear" }
  | { kind: "next" }
  | { kind: "missed" };

export interface GalleryKeyPress {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
}

/** The action for a key: the verdict set's keys first (a verdict keyed A, N or M wins), then A
 * (select page), N (next page), M (a missed-object point where the pointer is), Escape (clear);
 * null for anything else. */
export function galleryActionForKey(
  press: GalleryKeyPress,
  verdicts: readonly { name: string; key: string }[],
): GalleryAction | null {
  if (press.altKey || press.ctrlKey || press.metaKey) return null;
  const key = press.key.length === 1 ? press.key.toLowerCase() : press.key;
  const verdict = verdicts.find((v) => v.key.toLowerCase() === key);
  if (verdict) return { kind: "verdict", verdict: verdict.name };
  switch (key) {
    case "a":
      return { kind: "selectPage" };
    case "n":
      return { kind: "next" };
    case "m":
      return { kind: "missed" };
    case "Escape":
      return { kind: "clear" };
    default:
      return null;
  }
}
