"""Routes under ``/api/``: the versioned resources, the OpenAPI schema and its interactive docs."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter, SimpleRouter

from billing import api as billing_api
from billing import records_api
from chargers import alerts_api, commands_api, firmware_api, locallist_api, reservation_api
from chargers import api as chargers_api
from operations import api as operations_api
from routing import api as routing_api
from smartcharging import api as smartcharging_api

from . import api


class Router(DefaultRouter):
    # Charger identities may contain dots; no ".json"-style suffix routes to mistake them for.
    include_format_suffixes = False


router = Router()
router.register("organizations", api.OrganizationViewSet, basename="organization")
router.register("api-tokens", api.ApiTokenViewSet, basename="api-token")
router.register("sites", chargers_api.SiteViewSet, basename="site")
router.register("chargers", chargers_api.ChargerViewSet, basename="charger")
router.register("connectors", chargers_api.ConnectorViewSet, basename="connector")
router.register("id-tokens", chargers_api.IdTokenViewSet, basename="id-token")
router.register("sessions", chargers_api.SessionViewSet, basename="session")
router.register("frames", chargers_api.FrameViewSet, basename="frame")
router.register("commands", commands_api.CommandViewSet, basename="command")
router.register("reservations", reservation_api.ReservationViewSet, basename="reservation")
router.register("routing/changes", routing_api.RoutingChangeViewSet, basename="routing-change")
router.register("routing/chargers", routing_api.ChargerRoutingViewSet, basename="routing-charger")
router.register("tariffs", billing_api.TariffViewSet, basename="tariff")
router.register(
    "tariff-assignments", billing_api.TariffAssignmentViewSet, basename="tariff-assignment"
)
router.register("price-groups", billing_api.PriceGroupViewSet, basename="price-group")
router.register("alerts", alerts_api.AlertViewSet, basename="alert")
router.register("webhook-endpoints", alerts_api.WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("alert-deliveries", alerts_api.AlertDeliveryViewSet, basename="alert-delivery")
router.register("cdrs", records_api.CdrViewSet, basename="cdr")
router.register("invoices", records_api.InvoiceViewSet, basename="invoice")
router.register("statements", records_api.StatementViewSet, basename="statement")
router.register("disputes", records_api.DisputeViewSet, basename="dispute")
router.register(
    "customer-accounts", records_api.CustomerAccountViewSet, basename="customer-account"
)
router.register("site-hosts", records_api.SiteHostViewSet, basename="site-host")
router.register("energy-prices", records_api.EnergyPriceViewSet, basename="energy-price")
router.register(
    "cost-display-rules", records_api.CostDisplayRuleViewSet, basename="cost-display-rule"
)
router.register(
    "firmware-campaigns", firmware_api.FirmwareCampaignViewSet, basename="firmware-campaign"
)
router.register("diagnostics", firmware_api.DiagnosticsFileViewSet, basename="diagnostics")
router.register(
    "reconciliation-cases",
    operations_api.ReconciliationCaseViewSet,
    basename="reconciliation-case",
)
router.register(
    "configuration-baselines",
    operations_api.ConfigurationBaselineViewSet,
    basename="configuration-baseline",
)
router.register(
    "maintenance-windows",
    operations_api.MaintenanceWindowViewSet,
    basename="maintenance-window",
)

frames_export = chargers_api.FrameViewSet.export_initkwargs

site_router = SimpleRouter(trailing_slash=True)
site_router.register("circuits", smartcharging_api.CircuitViewSet, basename="site-circuit")
site_router.register(
    "charger-loads", smartcharging_api.ChargerLoadViewSet, basename="site-charger-load"
)
site_router.register(
    "limit-schedules", smartcharging_api.LimitScheduleViewSet, basename="site-limit-schedule"
)
site_router.register(
    "limit-events", smartcharging_api.LimitEventViewSet, basename="site-limit-event"
)
smartcharging_api_urls = [
    path(
        "capacity/",
        smartcharging_api.CapacityViewSet.as_view({"get": "retrieve", "put": "update"}),
        name="site-capacity",
    ),
    path("load/", smartcharging_api.LoadViewSet.as_view({"get": "retrieve"}), name="site-load"),
    *site_router.urls,
]

urlpatterns = [
    path(
        "v1/frames/export.ndjson",
        chargers_api.FrameViewSet.as_view({"get": "export_ndjson"}, **frames_export),
        name="frame-export-ndjson",
    ),
    path(
        "v1/frames/export.csv",
        chargers_api.FrameViewSet.as_view({"get": "export_csv"}, **frames_export),
        name="frame-export-csv",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/commands/$",
        commands_api.ChargerCommandViewSet.as_view({"get": "list", "post": "create"}),
        name="charger-commands",
    ),
    path("v1/routing/policy/", routing_api.RoutingPolicyView.as_view(), name="routing-policy"),
    re_path(r"^v1/sites/(?P<site_pk>[^/]+)/", include(smartcharging_api_urls)),
    path(
        "v1/alert-stats/",
        alerts_api.AlertViewSet.as_view({"get": "stats"}, pagination_class=None),
        name="alert-stats",
    ),
    path(
        "v1/dispute-rate/",
        records_api.DisputeViewSet.as_view(
            {"get": "rate"}, filterset_class=None, pagination_class=None
        ),
        name="dispute-rate",
    ),
    path(
        "v1/alert-subscription/",
        alerts_api.AlertSubscriptionViewSet.as_view(
            {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
        ),
        name="alert-subscription",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/diagnostics/$",
        firmware_api.ChargerDiagnosticsViewSet.as_view({"post": "create"}),
        name="charger-diagnostics",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/configuration-drift/$",
        operations_api.ChargerDriftViewSet.as_view({"get": "retrieve"}),
        name="charger-drift",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/configuration-drift/apply/$",
        operations_api.ChargerDriftViewSet.as_view({"post": "apply"}),
        name="charger-drift-apply",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/configuration-drift/read/$",
        operations_api.ChargerDriftViewSet.as_view({"post": "read"}),
        name="charger-drift-read",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/local-list/$",
        locallist_api.ChargerLocalListViewSet.as_view({"get": "retrieve"}),
        name="charger-local-list",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/local-list/sync/$",
        locallist_api.ChargerLocalListViewSet.as_view({"post": "sync"}),
        name="charger-local-list-sync",
    ),
    re_path(
        r"^v1/chargers/(?P<identity>[^/]+)/local-list/check/$",
        locallist_api.ChargerLocalListViewSet.as_view({"post": "check"}),
        name="charger-local-list-check",
    ),
    path(
        "v1/uptime/",
        operations_api.UptimeViewSet.as_view({"get": "report"}),
        name="uptime",
    ),
    path(
        "v1/uptime/export.csv",
        operations_api.UptimeViewSet.as_view({"get": "export"}),
        name="uptime-export-csv",
    ),
    path("v1/", include(router.urls)),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="api-docs",
    ),
    re_path(r"^.*$", api.not_found),
]
