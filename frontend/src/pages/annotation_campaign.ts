// Entry point of an annotation campaign's page (annotation/campaign.html); tests read
// `window.annotome` (`retrain`: the runs app's Retrain panel, managers of painted campaigns).
import { type CampaignHooks, mountCampaignPage } from "../annotation_campaign/campaign_page";
import { type RetrainHooks, mountRetrainPanel } from "../runs/retrain_panel";

const hooks: CampaignHooks & { retrain?: RetrainHooks | undefined } = mountCampaignPage();
hooks.retrain = mountRetrainPanel();
(window as unknown as { annotome: typeof hooks }).annotome = hooks;
hooks.ready.catch(() => {});
