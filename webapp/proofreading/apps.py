from django.apps import AppConfig


class ProofreadingConfig(AppConfig):
    name = "webapp.proofreading"
    label = "proofreading"
