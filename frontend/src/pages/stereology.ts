// Entry point of the disector counting page (stereology/study.html). `window.annotome` is
// declared by the viewer page with its own hooks, so this page sets it through a cast.
import { type DisectorHooks, mountDisectorPage } from "../stereology/page";

const hooks = mountDisectorPage();
(window as unknown as { annotome: DisectorHooks }).annotome = hooks;
// A failed load is already on the page's banner; tests read it through annotome.ready.
hooks.ready.catch(() => {});
