"""URL routes of the HTTP side; the OCPP WebSocket routes live in ``chargers.routing``."""

from django.contrib import admin
from django.urls import include, path, re_path

from chargers import upload_views

from . import health, metrics, views

admin.site.site_header = "CPMS administration"
admin.site.site_title = "CPMS"

urlpatterns = [
    path("", include("chargers.urls")),
    path("routing/", include("routing.urls")),
    path("", include("smartcharging.urls")),
    path("tariffs/", include("billing.tariff_urls")),
    path("billing/", include("billing.record_urls")),
    path("", include("operations.urls")),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("organization/", views.organization_switch, name="organization_switch"),
    path("api-tokens/", views.api_token_list, name="api_tokens"),
    path("api-tokens/<int:pk>/revoke", views.api_token_revoke_view, name="api_token_revoke"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="prometheus-django-metrics"),
    path("api/", include("cpms.api_urls")),
    path("firmware/", include("chargers.firmware_urls")),
    # Chargers upload diagnostics and log files here (the token is the credential).
    re_path(
        r"^uploads/(?P<token>[A-Za-z0-9_-]{20,100})(?:/(?P<name>[^/]{1,200}))?/?$",
        upload_views.upload,
        name="diagnostics_upload",
    ),
]
