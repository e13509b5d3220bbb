// Entry point of a run's page (runs/run.html); tests read `window.annotome`.
import { type RunHooks, mountRunPage } from "../runs/page";

const hooks = mountRunPage();
(window as unknown as { annotome: RunHooks }).annotome = hooks;
hooks.ready.catch(() => {});
