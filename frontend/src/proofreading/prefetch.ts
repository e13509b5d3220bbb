// The queue page's local queue: the items `next/` handed out, the first shown, the others kept
// ready so that the next detection is drawn the moment a verdict is given. Asking `next/` again
// returns the items still held first, so answers are merged by item id: known items keep their
// place, new ones go to the end; an item given a verdict, skipped or flagged is dropped and
// never re-added from a stale answer in flight at the time.

export interface QueueItem {
  id: number;
  segment_id: number;
}

export class PrefetchQueue<T extends QueueItem> {
  private items: T[] = [];
  private readonly done = new Set<number>();

  constructor(readonly ahead: number) {}

  /** The item to show, or undefined when the queue is empty. */
  get current(): T | undefined {
    return this.items[0];
  }

  get size(): number {
    return this.items.length;
  }

  /** Whether fewer than `ahead` items wait behind the current one. */
  needsRefill(): boolean {
    return this.items.length < this.ahead + 1;
  }

  /** How many to ask `next/` for: the current one plus `ahead`. */
  get wanted(): number {
    return this.ahead + 1;
  }

  /** Merges an answer of `next/` (see the file comment); returns how many were new. */
  merge(answer: readonly T[]): number {
    const known = new Set(this.items.map((item) => item.id));
    let added = 0;
    for (const item of answer) {
      if (known.has(item.id) || this.done.has(item.id)) continue;
      this.items.push(item);
      known.add(item.id);
      added += 1;
    }
    return added;
  }

  /** Drops the current item (decided, skipped, flagged) and returns it. */
  advance(): T | undefined {
    const item = this.items.shift();
    if (item) this.done.add(item.id);
    return item;
  }

  /** Puts an item back in front (an undone verdict): it is shown again at once. */
  restore(item: T): void {
    this.done.delete(item.id);
    this.items = [item, ...this.items.filter((other) => other.id !== item.id)];
  }

  ids(): number[] {
    return this.items.map((item) => item.id);
  }
}
