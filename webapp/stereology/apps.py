from django.apps import AppConfig


class StereologyConfig(AppConfig):
    name = "webapp.stereology"
    label = "stereology"
    verbose_name = "Stereology (disector miss-rate studies)"
