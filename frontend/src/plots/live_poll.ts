// A dashboard's live refresh: load, draw, say when, and poll again every few seconds (also on
// resize, so the plots take the new width). A failed poll shows the banner; polling goes on.

import { ApiError } from "../lib/api";

export interface LivePoll<T> {
  /** Resolves once the first refresh has been drawn (rejects when it failed). */
  ready: Promise<void>;
  refresh(): Promise<void>;
  /** How many refreshes have been drawn. */
  refreshes(): number;
  last(): T | undefined;
}

export function livePoll<T>(
  load: () => Promise<T>,
  draw: (data: T) => void,
  view: { banner: HTMLElement; updated: HTMLElement; pollMs: number },
): LivePoll<T> {
  let refreshes = 0;
  let last: T | undefined;

  async function refresh(): Promise<void> {
    try {
      const data = await load();
      draw(data);
      last = data;
      refreshes++;
      view.banner.hidden = true;
      view.updated.textContent = `Updated ${new Date().toLocaleTimeString()} (every ${view.pollMs / 1000} s)`;
      view.updated.dataset["refreshes"] = String(refreshes);
    } catch (error) {
      view.banner.textContent = error instanceof ApiError ? error.message : String(error);
      view.banner.hidden = false;
      throw error;
    }
  }

  const schedule = (): void => {
    window.setTimeout(() => {
      refresh()
        .catch(() => {})
        .finally(schedule);
    }, view.pollMs);
  };
  const ready = refresh().finally(schedule);
  window.addEventListener("resize", () => void refresh().catch(() => {}));
  return { ready, refresh, refreshes: () => refreshes, last: () => last };
}
