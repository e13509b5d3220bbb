// Entry point of an annotation campaign's audit log (annotation/audit.html).
import { type AuditHooks, mountAuditPage } from "../annotation_campaign/audit_page";

const hooks = mountAuditPage();
(window as unknown as { annotome: AuditHooks }).annotome = hooks;
hooks.ready.catch(() => {});
