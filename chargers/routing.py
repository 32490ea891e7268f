"""WebSocket routes: the OCPP endpoint."""

from django.urls import re_path

from .consumers import OcppConsumer

websocket_urlpatterns = [
    # A charger id is any run of characters but '/', as OCPP allows (up to 48 in practice).
    re_path(r"^ocpp/(?P<charger_id>[^/]{1,48})/?$", OcppConsumer.as_asgi()),
]
