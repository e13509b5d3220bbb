from django.apps import AppConfig


class CurationConfig(AppConfig):
    """Proofreading results flowing back into the data: verdict tags in the layer's segment
    properties, verdict columns in the detections exports, curated layers."""

    name = "webapp.curation"
    label = "curation"

    def ready(self) -> None:
        from webapp.curation import signals

        signals.connect()
