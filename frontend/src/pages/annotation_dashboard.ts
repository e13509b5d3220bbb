// Entry point of the annotation dashboard (annotation/dashboard.html); tests read `window.annotome`.
import {
  type AnnotationDashboardHooks,
  mountAnnotationDashboard,
} from "../annotation_dashboard/page";

const hooks = mountAnnotationDashboard();
(window as unknown as { annotome: AnnotationDashboardHooks }).annotome = hooks;
hooks.ready.catch(() => {});
