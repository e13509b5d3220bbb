// Entry point of the annotation campaign list (annotation/campaign_list.html).
import { type ListHooks, mountListPage } from "../annotation_campaign/list_page";

(window as unknown as { annotome: ListHooks }).annotome = mountListPage();
