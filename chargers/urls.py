"""Dashboard URLs of the central system (namespace ``dashboard``); ``/`` is the overview."""

from django.urls import path

from . import command_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("chargers/", views.charger_list, name="charger_list"),
    path("chargers/<int:pk>/", views.charger_detail, name="charger_detail"),
    path("chargers/<int:pk>/row", views.charger_row, name="charger_row"),
    path("chargers/<int:pk>/frames/", views.charger_frames, name="charger_frames"),
    path("chargers/<int:pk>/commands/", command_views.charger_command, name="charger_command"),
    path("chargers/commands/", command_views.charger_bulk_command, name="charger_bulk_command"),
    path("commands/<int:pk>/retry", command_views.command_retry, name="command_retry"),
    path("sessions/", views.session_list, name="session_list"),
    path("sessions/<int:pk>/", views.session_detail, name="session_detail"),
    path("sites/", views.site_list, name="site_list"),
    path("sites/<int:pk>/", views.site_detail, name="site_detail"),
    path("id-tokens/", views.id_token_list, name="id_token_list"),
    path("id-tokens/new/", views.id_token_create, name="id_token_create"),
    path("id-tokens/<int:pk>/block", views.id_token_block, name="id_token_block"),
    path("id-tokens/<int:pk>/unblock", views.id_token_unblock, name="id_token_unblock"),
]
