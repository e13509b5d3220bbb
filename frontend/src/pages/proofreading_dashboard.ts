// Entry point of the dashboard page (proofreading/dashboard.html); tests read `window.annotome`.
import { type DashboardHooks, mountDashboardPage } from "../plots/dashboard_page";

const hooks = mountDashboardPage();
(window as unknown as { annotome: DashboardHooks }).annotome = hooks;
hooks.ready.catch(() => {});
