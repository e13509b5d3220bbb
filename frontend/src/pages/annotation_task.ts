// Entry point of the annotator's task page (annotation/task.html). `window.annotome` is declared
// by the viewer page with its own hooks, so this page sets it through a cast.
import { type TaskHooks, mountTaskPage } from "../annotation_task/page";

const hooks = mountTaskPage();
(window as unknown as { annotome: TaskHooks }).annotome = hooks;
// A failed load is already on the page's banner; tests read it through annotome.ready.
hooks.ready.catch(() => {});
