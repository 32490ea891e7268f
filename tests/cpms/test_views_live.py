"""The dashboard's live socket (``/ws/live/``): who may connect, and which events each one gets.

Driven with Channels' communicator over the real ASGI route (session auth, origin check) and the
configured channel layer (in-memory, or Redis with ``REDIS_URL``). An event that must not arrive
is followed by one that must: a channel delivers in order, so the first message received proves
the earlier one was dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client

from chargers import events, services
from chargers.batching import FrameRow
from chargers.models import Charger, Site
from chargers.normalize import utc_now
from cpms import live
from cpms.asgi import live_route
from cpms.models import Membership, Organization, Role
from tests.cpms.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter([live_route])


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@asynccontextmanager
async def live_socket(
    cookie: str | None, path: str = "/ws/live/", origin: str = "http://testserver"
) -> AsyncIterator[tuple[WebsocketCommunicator, bool, int | None]]:
    """A browser's live socket: (communicator, accepted, close code if refused)."""
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await ws.connect()
    try:
        yield ws, connected, None if connected else code
    finally:
        await ws.disconnect()
        # Database calls from async code run on one worker thread; its connection must not
        # outlive the test, or the test database cannot be dropped at the end of the run.
        await sync_to_async(connections.close_all)()


def frame(charger: Charger, identity: str, direction: str, kind: int) -> FrameRow:
    return FrameRow(
        charger_pk=charger.pk,
        charger_identity=identity,
        direction=direction,
        kind=kind,
        message_id="1",
        action="Heartbeat",
        raw="[]",
        timestamp=utc_now(),
    )


def event(kind: str, charger: str, **data: Any) -> dict[str, Any]:
    return {"type": "cpms.event", "kind": kind, "charger": charger, "data": data}


def booted(group: str) -> Any:
    """A send of a charger.booted event to ``group``, for the event sender."""

    async def send(layer: Any) -> None:
        await layer.group_send(group, event("charger.booted", "DEPOT-1"))

    return send


@pytest.fixture
def world(organization: Organization, site: Site, make_charger: Any) -> dict[str, Any]:
    harbour = Site.objects.create(organization=organization, name="Harbour")
    globex = Organization.objects.create(name="Globex", slug="globex")
    return {
        "depot_charger": make_charger("DEPOT-1"),
        "harbour_charger": make_charger("HARBOUR-1", site=harbour),
        "globex_charger": Charger.objects.create(identity="GLOBEX-1", organization=globex),
        "globex": globex,
        "operator": session_cookie(make_user("olga", organization, Role.OPERATOR)),
        "host": session_cookie(make_user("hana", organization, Role.SITE_HOST, (site,))),
        "integrator": session_cookie(make_user("ivan", organization, Role.INTEGRATOR)),
    }


@pytest.mark.parametrize("who", [None, "integrator"])
async def test_only_dashboard_users_may_connect(world: dict[str, Any], who: str | None) -> None:
    async with live_socket(world[who] if who else None) as (_, connected, code):
        assert not connected
        assert code == 4403


async def test_another_origin_is_refused(world: dict[str, Any]) -> None:
    async with live_socket(world["operator"], origin="https://evil.example") as (
        _,
        connected,
        _code,
    ):
        assert not connected


async def test_an_operator_gets_the_organizations_events_only(
    world: dict[str, Any], organization: Organization
) -> None:
    async with live_socket(world["operator"]) as (ws, connected, _):
        assert connected
        layer = get_channel_layer()
        await layer.group_send(
            events.organization_group(world["globex"].pk), event("connector.status", "GLOBEX-1")
        )
        await layer.group_send(
            events.organization_group(organization.pk),
            event("connector.status", "HARBOUR-1", status="Faulted"),
        )
        message = await ws.receive_json_from(timeout=5)
        assert message == {
            "kind": "connector.status",
            "charger": "HARBOUR-1",
            "data": {"status": "Faulted"},
        }


async def test_a_site_host_gets_events_of_their_sites_only(
    world: dict[str, Any], organization: Organization
) -> None:
    async with live_socket(world["host"]) as (ws, connected, _):
        assert connected
        layer = get_channel_layer()
        group = events.organization_group(organization.pk)
        await layer.group_send(group, event("session.started", "HARBOUR-1"))
        await layer.group_send(group, event("session.started", "DEPOT-1"))
        message = await ws.receive_json_from(timeout=5)
        assert message["charger"] == "DEPOT-1"


@pytest.mark.parametrize(
    ("who", "identity", "allowed"),
    [
        ("operator", "HARBOUR-1", True),
        ("operator", "GLOBEX-1", False),
        ("operator", "NO-SUCH-CHARGER", False),
        ("host", "DEPOT-1", True),
        ("host", "HARBOUR-1", False),
    ],
)
async def test_following_one_charger_needs_access_to_it(
    world: dict[str, Any], who: str, identity: str, allowed: bool
) -> None:
    async with live_socket(world[who], path=f"/ws/live/?charger={identity}") as (
        _,
        connected,
        code,
    ):
        assert connected is allowed
        assert code == (None if allowed else 4403)


async def test_a_charger_page_gets_its_journal_frames_and_nothing_else(
    world: dict[str, Any],
) -> None:
    depot = world["depot_charger"]
    # Another charger whose identity maps to the same group name.
    twin = await sync_to_async(Charger.objects.create)(
        identity="DEPOT_1", organization_id=depot.organization_id
    )

    def flush() -> None:
        services.batch_write(
            frames=[
                frame(depot, "DEPOT-1", "in", 2),
                frame(depot, "DEPOT-1", "out", 3),
                frame(twin, "DEPOT_1", "in", 2),
            ],
            seen={},
            statuses=[],
            samples=[],
        )

    async with live_socket(world["operator"], path="/ws/live/?charger=DEPOT-1") as (
        ws,
        connected,
        _,
    ):
        assert connected
        await sync_to_async(flush)()
        # Through the same sender as the frames, so that it goes out after them.
        await sync_to_async(events.send_soon)(booted(events.charger_group("DEPOT-1")))
        message = await ws.receive_json_from(timeout=5)
        assert message["kind"] == "journal.frames"
        assert message["charger"] == "DEPOT-1"
        assert message["data"]["count"] == 2
        assert message["data"]["actions"] == ["Heartbeat"]
        # The twin's frames were dropped: the next message is the one sent after them.
        assert (await ws.receive_json_from(timeout=5))["kind"] == "charger.booted"


async def test_journal_frames_never_reach_the_organizations_pages(
    world: dict[str, Any], organization: Organization
) -> None:
    depot = world["depot_charger"]
    async with live_socket(world["operator"]) as (ws, connected, _):
        assert connected
        await sync_to_async(services.batch_write)(
            frames=[frame(depot, "DEPOT-1", "in", 2)],
            seen={},
            statuses=[],
            samples=[],
        )
        # Through the same sender as the frames, so that it goes out after them.
        await sync_to_async(events.send_soon)(booted(events.organization_group(organization.pk)))
        assert (await ws.receive_json_from(timeout=5))["kind"] == "charger.booted"


async def test_a_socket_closes_once_its_session_ends(
    world: dict[str, Any], organization: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "REVALIDATE_SECONDS", 0.0)
    async with live_socket(world["operator"]) as (ws, connected, _):
        assert connected
        group = events.organization_group(organization.pk)
        await get_channel_layer().group_send(group, event("charger.booted", "DEPOT-1"))
        assert (await ws.receive_json_from(timeout=5))["charger"] == "DEPOT-1"

        # Signed out in another tab: the session is gone from the store.
        await sync_to_async(Session.objects.filter(session_key=world["operator"]).delete)()
        await get_channel_layer().group_send(group, event("charger.booted", "DEPOT-1"))
        closed = await ws.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4403}


async def test_a_socket_closes_when_the_membership_changes(
    world: dict[str, Any], organization: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "REVALIDATE_SECONDS", 0.0)
    async with live_socket(world["host"]) as (ws, connected, _):
        assert connected
        await sync_to_async(Membership.objects.filter(user__username="hana").update)(
            role=Role.INTEGRATOR
        )
        await get_channel_layer().group_send(
            events.organization_group(organization.pk), event("charger.booted", "DEPOT-1")
        )
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
