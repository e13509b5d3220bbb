from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "webapp.viewer"
    label = "viewer"

    def ready(self) -> None:
        from webapp.datasets.signals import layers_changed
        from webapp.viewer.thumbnails import thumbnail_on_layers_changed

        layers_changed.connect(thumbnail_on_layers_changed, dispatch_uid="viewer-thumbnail")
