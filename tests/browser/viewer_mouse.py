"""Drawing in the embedded Neuroglancer with the mouse, as a person does: where the cross-section
panel is, which voxel is under the pointer, Ctrl+click (draw) and Ctrl+Alt+right-click (delete).
The page under test must expose ``annotome.viewer()`` (the task and review pages do)."""

from __future__ import annotations

from typing import Any

READY_MS = 90_000


def xy_panel(page: Any) -> dict[str, float]:
    """The first rendered data panel (the x-y cross-section) of the viewer iframe."""
    panel = page.frame_locator("#neuroglancer").locator(".neuroglancer-rendered-data-panel").first
    box: dict[str, float] = panel.bounding_box()
    return box


def mouse_voxel(page: Any, x: float, y: float) -> list[float]:
    """Move the mouse to (x, y) and return the viewer's position under it as voxel z y x
    (voxel i's centre at i in the viewer as in the API: the same numbers, in reverse order).

    Waits until Neuroglancer's mouse state is at (x, y) itself (its ``pageX``/``pageY``, in
    the viewer frame's page), then has it compute the position there (it does so lazily, on
    the next frame): waiting for the position merely to change read, on a loaded machine, a
    late update from the click that focused the panel, one grid step from the point drawn.
    """
    origin = page.evaluate(
        """() => { const f = document.querySelector("#neuroglancer");
             const r = f.getBoundingClientRect();
             return [r.left + f.clientLeft, r.top + f.clientTop]; }"""
    )
    target = [x - origin[0], y - origin[1]]
    page.mouse.move(x + 1, y)
    page.mouse.move(x, y)
    page.wait_for_function(
        """([tx, ty]) => { const m = annotome.viewer().mouseState;
             const w = document.querySelector("#neuroglancer").contentWindow;
             if (Math.abs(m.pageX - w.scrollX - tx) >= 1 || Math.abs(m.pageY - w.scrollY - ty) >= 1)
               return false;
             // The position is computed lazily (on the next frame, or when asked): ask.
             return m.updateUnconditionally() && m.position.length >= 3; }""",
        arg=target,
        timeout=10_000,
    )
    pos = page.evaluate("() => Array.from(annotome.viewer().mouseState.position)")
    return [round(pos[2], 3), round(pos[1], 3), round(pos[0], 3)]


def ctrl_click(page: Any, x: float, y: float, *, alt: bool = False, button: str = "left") -> None:
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    if alt:
        page.keyboard.down("Alt")
    page.mouse.click(x, y, button=button)
    if alt:
        page.keyboard.up("Alt")
    page.keyboard.up("Control")


def failed_responses(page: Any) -> list[str]:
    """A list that fills with "<status> <url>" of every answer of 400 or more the page gets."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return failed


def viewer_ready(page: Any) -> None:
    """The page's viewer loaded its state without errors and drew it."""
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
