"""Top-level URL map. Each app owns its own url modules."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.core import pages
from webapp.core.api_root import ApiRootView

# Pages get the site's templates; any /api/ path (an unknown endpoint, /jobs/<not a number>/)
# gets the API's JSON error shape.
handler400 = "webapp.core.pages.bad_request"
handler404 = "webapp.core.pages.page_not_found"
handler500 = "webapp.core.pages.server_error"

api_v1: list[URLPattern | URLResolver] = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("", include("webapp.accounts.api.urls")),
    path("", include("webapp.datasets.api.urls")),
    path("", include("webapp.detections.api.urls")),
    path("", include("webapp.proofreading.api.urls")),
    path("", include("webapp.curation.api.urls")),
    path("", include("webapp.stereology.api.urls")),
    path("", include("webapp.annotation.api.urls")),
    path("", include("webapp.runs.api.urls")),
    path("", include("webapp.viewer.api.urls")),
]

urlpatterns = [
    path("favicon.ico", pages.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include("webapp.accounts.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Data for Neuroglancer: /data/<slug>/<path> and /s/<token>/data/<path>.
    path("", include("webapp.datasets.serving_urls")),
    # Dataset pages (import) before the viewer's catch-all datasets/<slug>/.
    path("datasets/", include("webapp.datasets.urls")),
    path("datasets/", include("webapp.detections.urls")),
    path("proofreading/", include("webapp.proofreading.urls")),
    path("stereology/", include("webapp.stereology.urls")),
    path("annotation/", include("webapp.annotation.urls")),
    path("", include("webapp.runs.urls")),
    path("", include("webapp.viewer.urls")),
]
