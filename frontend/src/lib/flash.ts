// A message for the next page: a script that navigates away right after doing something ("v2
// is already open: opening it") would otherwise show it for a few milliseconds. The next page
// shows it as the server's messages show (the .messages list under the header), once.

const KEY = "annotome.flash";

/** Keeps `text` for the next page this tab opens. */
export function flashNext(text: string, storage?: Storage): void {
  try {
    // Inside the try: where the browser blocks site storage, reading sessionStorage throws.
    (storage ?? window.sessionStorage).setItem(KEY, text);
  } catch {
    // Storage refused (private mode, quota): the message is only lost.
  }
}

/** Shows the message kept for this page, if any, and forgets it. Returns its text. */
export function showFlash(doc: Document = document, storage?: Storage): string {
  let text: string | null = null;
  try {
    const kept = storage ?? window.sessionStorage;
    text = kept.getItem(KEY);
    kept.removeItem(KEY);
  } catch {
    return "";
  }
  if (!text) return "";
  let list = doc.querySelector<HTMLUListElement>("ul.messages");
  if (!list) {
    list = doc.createElement("ul");
    list.className = "messages";
    const main = doc.querySelector("main");
    if (main) main.before(list);
    else doc.body.prepend(list);
  }
  const item = doc.createElement("li");
  item.className = "message info flash";
  item.setAttribute("role", "status");
  item.textContent = text;
  const close = doc.createElement("button");
  close.type = "button";
  close.className = "link-button flash-close";
  close.textContent = "×";
  close.title = "Dismiss";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => item.remove());
  item.append(" ", close);
  list.append(item);
  return text;
}
