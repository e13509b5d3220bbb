// Entry point of the viewer page (dataset_viewer.html).
import { type ViewerHooks, mountViewerPage } from "../viewer/page";

declare global {
  interface Window {
    annotome: ViewerHooks;
  }
}

window.annotome = mountViewerPage();
// A failed load is already on the page's banner; tests read it through annotome.ready.
window.annotome.ready.catch(() => {});
