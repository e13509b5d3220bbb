// Entry point of the viewer's Detections panel (signed-in pages, not share links).
import { mountDetectionsPanel } from "../detections/panel";

const toggle = document.getElementById("detections-toggle");
const panel = document.getElementById("detections-panel");
if (toggle instanceof HTMLButtonElement && panel) mountDetectionsPanel(panel, toggle);
