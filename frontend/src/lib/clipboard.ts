// Copying text: the async Clipboard API where the page may use it (a secure context, permission),
// else the selection the caller made and the legacy copy command.

/** True when `text` reached the clipboard through the Clipboard API. */
export async function writeClipboard(text: string, win: Window = window): Promise<boolean> {
  if (!win.navigator.clipboard || !win.isSecureContext) return false;
  try {
    await win.navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** Selects `node`'s text and copies it: the Clipboard API first, then `execCommand("copy")`. */
export async function copyNodeText(
  node: Node,
  text: string,
  win: Window = window,
): Promise<boolean> {
  const range = win.document.createRange();
  range.selectNodeContents(node);
  const selection = win.getSelection();
  selection?.removeAllRanges();
  selection?.addRange(range);
  if (await writeClipboard(text, win)) return true;
  try {
    // Deprecated, but the only way without the Clipboard API (plain http on a LAN address).
    return win.document.execCommand("copy");
  } catch {
    return false;
  }
}
