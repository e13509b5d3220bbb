// Entry point of a layer's detections table page.
import { mountDetectionsTable } from "../detections/table";

const root = document.getElementById("detections-table");
if (root) mountDetectionsTable(root);
