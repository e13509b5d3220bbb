from django.contrib import admin

from webapp.stereology.models import DisectorMark, DisectorStudy


@admin.register(DisectorStudy)
class DisectorStudyAdmin(admin.ModelAdmin[DisectorStudy]):
    list_display = ("name", "campaign", "n_pairs", "h_um_requested", "created")


@admin.register(DisectorMark)
class DisectorMarkAdmin(admin.ModelAdmin[DisectorMark]):
    list_display = ("study", "pair", "reviewer", "segment_id", "match", "created")
