// Entry point of an annotation campaign's page (annotation/campaign.html); tests read
// `window.annotome`.
import { type CampaignHooks, mountCampaignPage } from "../annotation_campaign/campaign_page";

const hooks = mountCampaignPage();
(window as unknown as { annotome: CampaignHooks }).annotome = hooks;
hooks.ready.catch(() => {});
