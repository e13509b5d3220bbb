from django.apps import AppConfig


class DetectionsConfig(AppConfig):
    name = "webapp.detections"
    label = "detections"

    def ready(self) -> None:
        from webapp.datasets.signals import layers_changed
        from webapp.detections.signals import detections_on_layers_changed

        layers_changed.connect(detections_on_layers_changed, dispatch_uid="detections-build")
