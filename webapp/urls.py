"""Top-level URL map. Each app owns its own url modules."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.core.api_views import api_not_found

api_v1 = [
    path("", include("webapp.accounts.api.urls")),
    path("", include("webapp.datasets.api.urls")),
    path("", include("webapp.viewer.api.urls")),
    # Last: any other API path (e.g. /jobs/<not a number>/) answers a JSON 404.
    re_path(r"^(?P<path>.+/)$", api_not_found),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("webapp.accounts.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Data for Neuroglancer: /data/<slug>/<path> and /s/<token>/data/<path>.
    path("", include("webapp.datasets.serving_urls")),
    # Dataset pages (import) before the viewer's catch-all datasets/<slug>/.
    path("datasets/", include("webapp.datasets.urls")),
    path("", include("webapp.viewer.urls")),
]
