// Small typed DOM helpers: look elements up by id with a clear error, build nodes.

/** The element with this id, checked to be of `type`; throws naming the id when it is missing. */
export function byId<T extends HTMLElement>(
  id: string,
  type: abstract new () => T,
  root: Document = document,
): T {
  const node = root.getElementById(id);
  if (!(node instanceof type)) {
    throw new Error(`The page has no #${id} (${type.name}).`);
  }
  return node;
}

/** Parses the JSON of a `{{ value|json_script:"id" }}` element. */
export function jsonScript<T>(id: string, root: Document = document): T {
  const node = root.getElementById(id);
  if (!node?.textContent) throw new Error(`The page has no #${id} data.`);
  return JSON.parse(node.textContent) as T;
}

type Props<K extends keyof HTMLElementTagNameMap> = Partial<
  Pick<HTMLElementTagNameMap[K], WritableKeys<HTMLElementTagNameMap[K]>>
>;
type WritableKeys<T> = {
  [P in keyof T]-?: T[P] extends (...args: never[]) => unknown
    ? never
    : IfEquals<{ [Q in P]: T[P] }, { -readonly [Q in P]: T[P] }, P>;
}[keyof T];
type IfEquals<X, Y, A> =
  (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? A : never;

/** `el("a", {href, textContent}, [child, ...])`. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props<K> = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** The event a page part dispatches on the document after it added or reordered a campaign's
 * boxes (e.g. Suggest next boxes), so the campaign page redraws its table and coverage map. */
export const BOXES_CHANGED = "annotome:boxes-changed";
