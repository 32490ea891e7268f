"""WebSocket routes: the OCPP endpoint."""

from django.urls import re_path

from .admission import guard
from .consumers import OcppConsumer

websocket_urlpatterns = [
    # A charger id is any run of characters but '/', as OCPP allows (up to 48 in practice).
    # Admission refuses a handshake before a consumer is built for it (chargers.admission).
    re_path(
        r"^ocpp/(?P<charger_id>[^/]{1,48})/?$",
        guard(OcppConsumer.as_asgi()),  # type: ignore[arg-type]
    ),
]
