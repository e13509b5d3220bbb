from django.contrib import admin

from webapp.annotation.models import AnnotationCampaign, Assignment, AuditEntry, TaskBox


@admin.register(AnnotationCampaign)
class CampaignAdmin(admin.ModelAdmin[AnnotationCampaign]):
    list_display = ["id", "name", "dataset", "image_layer", "redundancy", "state", "created"]


@admin.register(TaskBox)
class BoxAdmin(admin.ModelAdmin[TaskBox]):
    list_display = ["id", "campaign", "name", "source", "priority", "flag_reason"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin[Assignment]):
    list_display = ["id", "box", "slot", "annotator", "state", "version", "active_seconds"]


@admin.register(AuditEntry)
class AuditAdmin(admin.ModelAdmin[AuditEntry]):
    list_display = ["id", "campaign", "created", "actor", "action"]
