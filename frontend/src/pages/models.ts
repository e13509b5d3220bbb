// Entry point of a dataset's model comparison page (runs/models.html); tests read `window.annotome`.
import { type ModelsHooks, mountModelsPage } from "../models/page";

const hooks = mountModelsPage();
(window as unknown as { annotome: ModelsHooks }).annotome = hooks;
