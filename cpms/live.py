"""Live updates for dashboard pages over a WebSocket, signed in with the Django session.

``/ws/live/`` follows the whole organization (the ``org.<pk>`` group); ``/ws/live/?charger=<id>``
follows one charger (its ``charger.<id>`` group, which also carries its journal frames). The
browser gets each domain event as JSON ``{"kind", "charger", "data"}`` and refreshes what shows it.
A site host only gets events of chargers at their sites. A socket whose session has ended (signed
out, expired) or whose membership changed is closed at the next event after a periodic re-check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from chargers import selectors, watching
from chargers.events import charger_group, organization_group
from chargers.models import Charger

from .middleware import tenant_for_session
from .tenancy import Tenant

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
# How long a charger's site is remembered for filtering a site host's events, in seconds. A
# charger moved to another site is filtered by its new site after at most this long.
SITE_CACHE_SECONDS = 30.0
# How often an open socket checks that its session and membership still hold, in seconds.
REVALIDATE_SECONDS = 60.0

_site_cache: dict[str, tuple[int | None, float]] = {}


def _load_site(identity: str) -> int | None:
    site_id = Charger.objects.filter(identity=identity).values_list("site_id", flat=True).first()
    if len(_site_cache) > 10000:
        _site_cache.clear()
    _site_cache[identity] = (site_id, time.monotonic() + SITE_CACHE_SECONDS)
    return site_id


async def site_of(identity: str) -> int | None:
    """The site of a charger, from the cache when fresh (no thread hop), else the database."""
    cached = _site_cache.get(identity)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    return await database_sync_to_async(_load_site)(identity)


def _tenant_now(session_key: str | None) -> Tenant | None:
    """The tenant of a session as it stands now; None once it is signed out or has expired."""
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return tenant_for_session(get_user(SimpleNamespace(session=session)), session)  # type: ignore[arg-type]


def _charger_visible(tenant: Tenant, identity: str) -> bool:
    return selectors.chargers_for(tenant).filter(identity=identity).exists()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    tenant: Tenant | None = None
    charger: str = ""
    group: str = ""
    session_key: str | None = None
    revalidate_at: float = 0.0
    renewal: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.tenant = await database_sync_to_async(tenant_for_session)(
            self.scope.get("user"), self.scope.get("session")
        )
        if self.tenant is None or not self.tenant.uses_dashboard:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.charger = (query.get("charger") or [""])[0]
        if self.charger:
            if not await database_sync_to_async(_charger_visible)(self.tenant, self.charger):
                await self.close(code=CLOSE_FORBIDDEN)
                return
            self.group = charger_group(self.charger)
        else:
            self.group = organization_group(self.tenant.organization_id)
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.revalidate_at = time.monotonic() + REVALIDATE_SECONDS
        await self.channel_layer.group_add(self.group, self.channel_name)
        # Registered before the socket is accepted: what happens after, it hears.
        await watching.watch(self.group)
        if watching.enabled():
            self.renewal = asyncio.create_task(self._renew(), name="cpms-live-renew")
        await self.accept()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(watching.RENEW)
            try:
                await watching.watch(self.group)
            except Exception:
                logger.warning("could not renew the registration of %s", self.group, exc_info=True)

    async def disconnect(self, code: int) -> None:
        if self.renewal is not None:
            self.renewal.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The browser only listens."""

    async def still_allowed(self) -> bool:
        """Re-check the session now and then; close the socket if the tenant it served is gone."""
        if self.tenant is None:
            return False  # closed already, waiting for the disconnect
        if time.monotonic() < self.revalidate_at:
            return True
        if await database_sync_to_async(_tenant_now)(self.session_key) != self.tenant:
            self.tenant = None
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        self.revalidate_at = time.monotonic() + REVALIDATE_SECONDS
        return True

    async def cpms_event(self, message: dict[str, Any]) -> None:
        if not await self.still_allowed():
            return
        identity = message.get("charger", "")
        if self.charger:
            # Group names are sanitized; two identities may share one, so check the real one.
            if identity != self.charger:
                return
        elif self.tenant is not None and self.tenant.site_ids is not None:
            site_id = await site_of(identity)
            if site_id not in self.tenant.site_ids:
                return
        await self.send_json(
            {"kind": message["kind"], "charger": identity, "data": message.get("data", {})}
        )
