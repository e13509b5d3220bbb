from django.apps import AppConfig


class DetectionsConfig(AppConfig):
    name = "webapp.detections"
    label = "detections"

    def ready(self) -> None:
        from webapp.datasets.signals import layers_changed
        from webapp.detections.signals import detections_on_layers_changed

        layers_changed.connect(detections_on_layers_changed, dispatch_uid="detections-build")

        from django.db.models.signals import post_delete

        from webapp.datasets.models import Layer
        from webapp.detections.signals import cards_on_layer_deleted

        post_delete.connect(cards_on_layer_deleted, sender=Layer, dispatch_uid="detections-cards")

        from webapp.detections.points import points_on_layer_deleted

        post_delete.connect(points_on_layer_deleted, sender=Layer, dispatch_uid="detections-points")

        from webapp.detections.export_registry import register_export_columns
        from webapp.detections.filters import filter_export_columns

        register_export_columns("filter", filter_export_columns)  # the exports' kept column
