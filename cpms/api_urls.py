"""Routes under ``/api/``: the versioned resources, the OpenAPI schema and its interactive docs."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from chargers import api as chargers_api
from chargers import commands_api

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

frames_export = chargers_api.FrameViewSet.export_initkwargs

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
