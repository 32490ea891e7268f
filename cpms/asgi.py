"""ASGI entry point: ``daphne cpms.asgi:application`` serves HTTP and the OCPP WebSockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from chargers.routing import websocket_urlpatterns  # noqa: E402
from cpms.live import LiveConsumer  # noqa: E402
from cpms.runtime import (  # noqa: E402
    LifecycleMiddleware,
    defer_websocket_debug_formatting,
    raise_open_file_limit,
)

# Every charger socket is an open file: take what the hard limit allows before serving.
raise_open_file_limit()
defer_websocket_debug_formatting()

# Dashboard live updates: signed in with the session cookie, so only from our own origin.
live_route = path(
    "ws/live/", AllowedHostsOriginValidator(AuthMiddlewareStack(LiveConsumer.as_asgi()))
)

application = LifecycleMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter([*websocket_urlpatterns, live_route]),
        }
    )
)
