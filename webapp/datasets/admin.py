from django.contrib import admin

from webapp.datasets.models import Dataset, DatasetJob, Layer, ShareLink


class LayerInline(admin.TabularInline[Layer, Dataset]):
    model = Layer
    extra = 0
    fields = ("name", "kind", "path", "ngff_version", "shape", "dtype", "voxel_size", "unit")


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin[Dataset]):
    list_display = ("name", "slug", "owner", "visibility", "created")
    list_filter = ("visibility",)
    search_fields = ("name", "slug", "description")
    inlines = [LayerInline]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin[ShareLink]):
    list_display = ("dataset", "label", "created_by", "created", "expires_at", "revoked_at")


@admin.register(DatasetJob)
class DatasetJobAdmin(admin.ModelAdmin[DatasetJob]):
    list_display = ("id", "kind", "owner", "dataset", "status", "stage", "done", "total", "created")
    list_filter = ("kind", "status")
