// Entry point of the viewer's Share panel (loaded for the dataset's owner and superusers only).
import { mountSharePanel } from "../share/panel";

const toggle = document.getElementById("share-toggle");
const panel = document.getElementById("share-panel");
if (toggle && panel) mountSharePanel(panel, toggle);
