// Entry point of the proofreading queue page (proofreading/queue.html). `window.annotome` is
// declared by the viewer page with its own hooks, so this page sets it through a cast.
import { type QueueHooks, mountQueuePage } from "../proofreading/page";

const hooks = mountQueuePage();
(window as unknown as { annotome: QueueHooks }).annotome = hooks;
// A failed load is already on the page's banner; tests read it through annotome.ready.
hooks.ready.catch(() => {});
