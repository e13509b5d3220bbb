from django.apps import AppConfig


class RunsConfig(AppConfig):
    """Pipeline runs started from the site (retraining on approved ground truth) and the model
    registry they fill."""

    name = "webapp.runs"
    label = "runs"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from webapp.annotation.models import Assignment, BoxLabelTruth
        from webapp.core import current_models, page_panels
        from webapp.runs import auto_retrain, current_model, views

        page_panels.register("annotation.campaign", views.campaign_panel)
        page_panels.register("viewer.toolbar", views.viewer_retrain)
        current_models.register(current_model.current_model_of)
        post_save.connect(auto_retrain.on_assignment_saved, sender=Assignment)
        post_save.connect(auto_retrain.on_label_truth_saved, sender=BoxLabelTruth)
