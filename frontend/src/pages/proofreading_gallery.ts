// Entry point of the proofreading gallery page (proofreading/gallery.html). `window.annotome` is
// declared by the viewer page with its own hooks, so this page sets it through a cast.
import { type GalleryHooks, mountGalleryPage } from "../gallery/page";

const hooks = mountGalleryPage();
(window as unknown as { annotome: GalleryHooks }).annotome = hooks;
