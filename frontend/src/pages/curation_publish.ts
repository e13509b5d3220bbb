// Entry point of the campaign list's "Publish curated layer" controls (managers' rows only).
import { mountPublish } from "../curation/publish";

for (const root of document.querySelectorAll<HTMLElement>(".curate-publish")) mountPublish(root);
