"""Dashboard URLs of the central system (namespace ``dashboard``); ``/`` is the overview."""

from django.urls import path

from . import alert_views, command_views, locallist_views, reservation_views, views

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
    path(
        "chargers/<int:pk>/reservations/",
        reservation_views.charger_reservations,
        name="charger_reservations",
    ),
    path("chargers/<int:pk>/reserve", reservation_views.charger_reserve, name="charger_reserve"),
    path("reservations/", reservation_views.reservation_list, name="reservation_list"),
    path(
        "reservations/<int:pk>/cancel",
        reservation_views.reservation_cancel,
        name="reservation_cancel",
    ),
    path(
        "chargers/<int:pk>/local-list/sync",
        locallist_views.local_list_sync,
        name="charger_local_list_sync",
    ),
    path(
        "chargers/<int:pk>/local-list/check",
        locallist_views.local_list_check,
        name="charger_local_list_check",
    ),
    path("sessions/", views.session_list, name="session_list"),
    path("sessions/<int:pk>/", views.session_detail, name="session_detail"),
    path("sites/", views.site_list, name="site_list"),
    path("sites/<int:pk>/", views.site_detail, name="site_detail"),
    path("id-tokens/", views.id_token_list, name="id_token_list"),
    path("id-tokens/new/", views.id_token_create, name="id_token_create"),
    path("id-tokens/<int:pk>/block", views.id_token_block, name="id_token_block"),
    path("id-tokens/<int:pk>/unblock", views.id_token_unblock, name="id_token_unblock"),
    path("alerts/", alert_views.alert_list, name="alert_list"),
    path(
        "alerts/<int:pk>/acknowledge", alert_views.alert_acknowledge_view, name="alert_acknowledge"
    ),
    path("alerts/<int:pk>/resolve", alert_views.alert_resolve_view, name="alert_resolve"),
    path("alerts/subscription", alert_views.alert_subscription, name="alert_subscription"),
    path("alerts/webhooks/", alert_views.webhook_list, name="webhook_list"),
    path("alerts/webhooks/<int:pk>/toggle", alert_views.webhook_toggle, name="webhook_toggle"),
    path("alerts/webhooks/<int:pk>/delete", alert_views.webhook_delete, name="webhook_delete"),
]
