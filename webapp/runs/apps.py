from django.apps import AppConfig


class RunsConfig(AppConfig):
    """Pipeline runs started from the site (retraining on approved ground truth) and the model
    registry they fill."""

    name = "webapp.runs"
    label = "runs"
