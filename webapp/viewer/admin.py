from django.contrib import admin

from webapp.viewer.models import SavedState


@admin.register(SavedState)
class SavedStateAdmin(admin.ModelAdmin[SavedState]):
    list_display = ("key", "dataset", "created_by", "created")
