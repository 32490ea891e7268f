"""URL routes of the HTTP side; the OCPP WebSocket routes live in ``chargers.routing``."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from . import health, metrics

admin.site.site_header = "CPMS administration"
admin.site.site_title = "CPMS"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="prometheus-django-metrics"),
    path("api/", include("cpms.api_urls")),
]
