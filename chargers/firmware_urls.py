"""Dashboard URLs of firmware campaigns and diagnostics files (namespace ``firmware``)."""

from django.urls import path

from . import firmware_views

app_name = "firmware"

urlpatterns = [
    path("", firmware_views.campaign_list, name="campaign_list"),
    path("new/", firmware_views.campaign_create, name="campaign_create"),
    path("preview/", firmware_views.campaign_preview, name="campaign_preview"),
    path("<int:pk>/", firmware_views.campaign_detail, name="campaign_detail"),
    path(
        "<int:pk>/<str:operation>",
        firmware_views.campaign_control,
        name="campaign_control",
    ),
    path(
        "chargers/<int:pk>/diagnostics/",
        firmware_views.diagnostics_request,
        name="diagnostics_request",
    ),
    path(
        "diagnostics/<int:pk>/download",
        firmware_views.diagnostics_download,
        name="diagnostics_download",
    ),
]
