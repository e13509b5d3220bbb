from django.contrib import admin

from webapp.accounts.models import Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ("name", "slug", "created")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
