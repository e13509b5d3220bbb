// Entry point of the import page (datasets/import.html).
import { mountImportPage } from "../importer/page";

const form = document.getElementById("import-form");
if (form instanceof HTMLFormElement) mountImportPage(form);
