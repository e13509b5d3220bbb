from django.contrib import admin

from webapp.detections.models import Detection, DetectionBuild


@admin.register(DetectionBuild)
class DetectionBuildAdmin(admin.ModelAdmin[DetectionBuild]):
    list_display = ("id", "layer", "status", "stage", "reason", "n_detections", "created")
    list_filter = ("status", "reason")


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin[Detection]):
    list_display = ("layer", "segment_id", "voxels", "volume", "sphericity")
    # A layer holds up to 100,000s of rows: no full count, look rows up by segment id.
    show_full_result_count = False
    search_fields = ("=segment_id",)
    raw_id_fields = ("layer",)
