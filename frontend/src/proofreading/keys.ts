// The queue page's keyboard: the verdict set's keys give verdicts; S skips, F flags, U or
// Ctrl+Z (Cmd+Z) undoes, M drops a missed-object point. The verdict set may not use S, F, U or
// Z (webapp/proofreading/verdict_sets.py), so the two never collide; M is checked here.

export interface VerdictKey {
  name: string;
  key: string;
}

export type QueueAction =
  | { kind: "verdict"; verdict: string }
  | { kind: "skip" }
  | { kind: "flag" }
  | { kind: "undo" }
  | { kind: "missed" };

/** The parts of a KeyboardEvent that matter (so tests need no DOM). */
export interface KeyPress {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
}

/** The action for `press`, or null for keys the queue leaves alone (typing, shortcuts). */
export function actionForKey(press: KeyPress, verdicts: readonly VerdictKey[]): QueueAction | null {
  const key = press.key.length === 1 ? press.key.toLowerCase() : press.key;
  if (press.altKey) return null;
  if (press.ctrlKey || press.metaKey) return key === "z" ? { kind: "undo" } : null;
  const verdict = verdicts.find((v) => v.key.toLowerCase() === key);
  if (verdict) return { kind: "verdict", verdict: verdict.name };
  switch (key) {
    case "s":
      return { kind: "skip" };
    case "f":
      return { kind: "flag" };
    case "u":
      return { kind: "undo" };
    case "m":
      return { kind: "missed" };
    default:
      return null;
  }
}
