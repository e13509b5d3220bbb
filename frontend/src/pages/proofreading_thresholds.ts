// Entry point of the thresholds page (proofreading/thresholds.html); tests read
// `window.annotome` (ready, bounds, scores).
import { type ThresholdHooks, mountThresholdsPage } from "../plots/thresholds_page";

const hooks = mountThresholdsPage();
(window as unknown as { annotome: ThresholdHooks }).annotome = hooks;
hooks.ready.catch(() => {});
