"""Dashboard URLs of the operations app (namespace ``operations``)."""

from django.urls import path

from . import views

app_name = "operations"

urlpatterns = [
    path("reconciliation/", views.reconciliation_list, name="reconciliation_list"),
    path("reconciliation/<int:pk>/", views.reconciliation_detail, name="reconciliation_detail"),
    path(
        "reconciliation/<int:pk>/<str:verb>",
        views.reconciliation_act,
        name="reconciliation_act",
    ),
    path("baselines/", views.baseline_list, name="baseline_list"),
    path("baselines/<int:pk>/", views.baseline_detail, name="baseline_detail"),
    path("baselines/<int:pk>/apply", views.baseline_apply_all, name="baseline_apply_all"),
    path("baselines/<int:pk>/delete", views.baseline_delete, name="baseline_delete"),
    path(
        "baselines/chargers/<int:pk>/<str:verb>",
        views.charger_baseline,
        name="charger_baseline",
    ),
    path("uptime/", views.uptime_page, name="uptime"),
]
