// Builds each page's script and the style sheets into dist/, which Django collects as static
// files (STATICFILES_DIRS). Entries keep plain names (templates use {% static 'viewer.js' %} and
// {% static 'site.css' %}); the shared code (src/lib) is one content-hashed chunk under chunks/,
// so a cached old entry still finds the chunk it was built with. dist/.vite/manifest.json lists
// every output.
import { defineConfig } from "vitest/config";

const entries = {
  site: "src/pages/site.ts",
  viewer: "src/pages/viewer.ts",
  import: "src/pages/import.ts",
  share_links: "src/pages/share_links.ts",
  detections_panel: "src/pages/detections_panel.ts",
  detections_table: "src/pages/detections_table.ts",
  proofreading_queue: "src/pages/proofreading_queue.ts",
  stereology: "src/pages/stereology.ts",
  curation_publish: "src/pages/curation_publish.ts",
  proofreading_gallery: "src/pages/proofreading_gallery.ts",
  proofreading_thresholds: "src/pages/proofreading_thresholds.ts",
  proofreading_dashboard: "src/pages/proofreading_dashboard.ts",
  annotation_task: "src/pages/annotation_task.ts",
  annotation_review: "src/pages/annotation_review.ts",
  annotation_campaigns: "src/pages/annotation_campaigns.ts",
  annotation_campaign: "src/pages/annotation_campaign.ts",
  annotation_audit: "src/pages/annotation_audit.ts",
  annotation_dashboard: "src/pages/annotation_dashboard.ts",
  run: "src/pages/run.ts",
  models: "src/pages/models.ts",
  // Style sheets: the key only has to be unique; the file keeps its source name.
  "style:site": "src/styles/site.css",
  "style:viewer": "src/styles/viewer.css",
  "style:gallery": "src/styles/gallery.css",
  "style:plots": "src/styles/plots.css",
  "style:stereology": "src/styles/stereology.css",
  "style:annotation_task": "src/styles/annotation_task.css",
  "style:annotation": "src/styles/annotation.css",
  "style:runs": "src/styles/runs.css",
  "style:models": "src/styles/models.css",
};

/** "src/styles/viewer.css" -> "viewer.css"; other assets get a content hash. */
function assetName(info: { originalFileNames: readonly string[] }): string {
  const source = info.originalFileNames[0] ?? "";
  return source.startsWith("src/styles/")
    ? source.slice("src/styles/".length)
    : "assets/[name]-[hash][extname]";
}

export default defineConfig({
  publicDir: false,
  logLevel: "info",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    sourcemap: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    rolldownOptions: {
      input: entries,
      output: {
        entryFileNames: "[name].js",
        chunkFileNames: "chunks/[name]-[hash].js",
        assetFileNames: assetName,
        codeSplitting: { groups: [{ name: "shared", test: /src[\\/]lib[\\/]/ }] },
      },
    },
  },
  test: {
    // Pure logic runs in Node; files that need a DOM say `@vitest-environment happy-dom`.
    environment: "node",
    include: ["tests/**/*.test.ts"],
    restoreMocks: true,
    // One worker per environment rather than per file: half the run time on two cores; tests
    // undo their stubs and timers (unstubGlobals, restoreMocks, afterEach hooks).
    isolate: false,
    unstubGlobals: true,
  },
});
