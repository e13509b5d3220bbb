// Entry point of a dataset's model comparison page (runs/models.html); tests read `window.annotome`.
import { mountModelActions } from "../models/actions";
import { type ModelsHooks, mountModelsPage } from "../models/page";

const hooks: Partial<ModelsHooks> = document.getElementById("models-config")
  ? mountModelsPage()
  : {};
(window as unknown as { annotome: Partial<ModelsHooks> & { actions: unknown } }).annotome = {
  ...hooks,
  actions: mountModelActions(),
};
