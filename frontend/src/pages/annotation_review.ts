// Entry point of the annotation review page (annotation/review.html).
import { type ReviewHooks, mountReviewPage } from "../annotation_review/page";

const hooks = mountReviewPage();
(window as unknown as { annotome: ReviewHooks }).annotome = hooks;
// A failed load is already on the page's banner; tests read it through annotome.ready.
hooks.ready.catch(() => {});
