"""Reservations end to end: the REST API, the real server and simulated chargers in OCPP 1.6 and
2.0.1. A reservation becomes active when the charger accepts it and holds the connector
(Reserved), a session of its id token uses it, a cancel frees it, its time ends it (the sweep for
1.6, the charger's ReservationStatusUpdate for 2.0.1), an occupied connector is refused."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import requests
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from chargers.models import Charger, ChargerEvent, Connector, Reservation, Session
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from chargers.tasks import sweep_reservations
from cpms.models import Role
from cpms.services import api_token_create
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.e2e.commanding import create, eventually, finished

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def key(organization: Any, id_token: Any) -> str:
    return api_token_create(organization=organization, name="ops", role=Role.OPERATOR)[1]


@asynccontextmanager
async def simulated(
    server: ServerProcess, charger: Charger, protocol: str = "ocpp1.6"
) -> AsyncIterator[Any]:
    """A simulated charger, booted and reporting, that starts no session of its own."""
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=2,
        sessions_per_hour=0,
        meter_interval=0.5,
        session_minutes=30,
        id_tags=["TAG-OK"],
        reconnect=False,
        call_timeout=15,
        protocol=protocol,
    )
    cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
    sim = cls(charger.identity, config, Stats(), random.Random(1))
    task = asyncio.create_task(sim.run_once())
    try:
        await eventually(
            lambda: (
                Charger.objects.filter(pk=charger.pk, connected=True).exists()
                and Connector.objects.filter(charger=charger, status="Available")
                .exclude(connector_id=0)
                .count()
                == 2
            ),
            what="the simulated charger booted and reported",
        )
        yield sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def api(
    server: ServerProcess, key: str, method: str, path: str, body: Any = None
) -> requests.Response:
    return await asyncio.to_thread(
        requests.request,
        method,
        server.http_url + path,
        json=body,
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )


async def reserve(
    server: ServerProcess, key: str, charger: Charger, connector: int, seconds: float = 600
) -> dict[str, Any]:
    response = await api(
        server,
        key,
        "POST",
        "/api/v1/reservations/",
        {
            "charger": charger.identity,
            "connector": connector,
            "id_token": "TAG-OK",
            "expires_at": (timezone.now() + timedelta(seconds=seconds)).isoformat(),
        },
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def in_state(pk: int, state: str, timeout: float = 20.0) -> Reservation:
    def check() -> Reservation | None:
        row = Reservation.objects.get(pk=pk)
        return row if row.state == state else None

    return await eventually(check, timeout, f"reservation {pk} {state}")


async def shows(charger: Charger, status: str, *, evse: int = 1) -> None:
    await eventually(
        lambda: (
            Connector.objects.filter(charger=charger, evse_id=evse, status=status).exists()
            or Connector.objects.filter(charger=charger, connector_id=evse, status=status).exists()
        ),
        what=f"connector {evse} {status}",
    )


def history(charger: Charger, connector: int = 1) -> list[str]:
    """The connector's statuses, oldest first."""
    rows = Connector.objects.get(charger=charger, connector_id=connector).history.order_by(
        "timestamp", "id"
    )
    return [row.status for row in rows]


# --- Used by a session -----------------------------------------------------------------------------


async def test_a_16_reservation_is_used_by_the_session_of_its_id_tag(server, charger, key):
    async with simulated(server, charger) as sim:
        made = await reserve(server, key, charger, 1)
        active = await in_state(made["id"], "active")
        await shows(charger, "Reserved")
        # Another driver's remote start is refused on the held connector.
        other = await finished(
            await create(
                charger, "RemoteStartTransaction", {"connectorId": 1, "idTag": "SOMEONE-ELSE"}
            )
        )
        started = await finished(
            await create(charger, "RemoteStartTransaction", {"connectorId": 1, "idTag": "TAG-OK"})
        )
        used = await in_state(made["id"], "used")
        await shows(charger, "Charging")
        sim.stop_events[1].set()
    session = await sync_to_async(Session.objects.get)()
    assert (other.response_status, started.response_status) == ("Rejected", "Accepted")
    assert active.reservation_id == made["reservation_id"]
    assert used.session_id == session.pk
    assert session.reservation_id == made["reservation_id"]
    statuses = await sync_to_async(history)(charger)
    assert statuses.index("Reserved") < statuses.index("Charging")
    response = await api(server, key, "GET", f"/api/v1/reservations/{made['id']}/")
    assert (response.json()["state"], response.json()["session"]) == ("used", session.pk)


async def test_a_201_reservation_is_used_by_the_transaction_that_names_it(server, charger, key):
    async with simulated(server, charger, "ocpp2.0.1") as sim:
        made = await reserve(server, key, charger, 1)
        await in_state(made["id"], "active")
        await shows(charger, "Reserved")
        started = await finished(
            await create(
                charger,
                "RequestStartTransaction",
                {"idToken": {"idToken": "TAG-OK", "type": "ISO14443"}, "remoteStartId": 41},
            )
        )
        used = await in_state(made["id"], "used")
        await shows(charger, "Charging")
        sim.stop_events[1].set()
    session = await sync_to_async(Session.objects.get)()
    assert started.response_status == "Accepted"
    assert (used.session_id, session.reservation_id) == (session.pk, made["reservation_id"])
    assert session.evse_id == 1


# --- Cancelled, refused ----------------------------------------------------------------------------


async def test_a_cancelled_reservation_frees_its_connector(server, charger, key):
    async with simulated(server, charger):
        made = await reserve(server, key, charger, 2)
        await in_state(made["id"], "active")
        await shows(charger, "Reserved", evse=2)
        response = await api(server, key, "POST", f"/api/v1/reservations/{made['id']}/cancel/")
        assert response.status_code == 202, response.text
        cancelled = await in_state(made["id"], "cancelled")
        await shows(charger, "Available", evse=2)
        again = await api(server, key, "POST", f"/api/v1/reservations/{made['id']}/cancel/")
    assert cancelled.finished_at is not None
    assert again.status_code == 409
    assert [c["action"] for c in response.json()["commands"]] == [
        "ReserveNow",
        "CancelReservation",
    ]


async def test_a_cancel_the_charger_refuses_leaves_the_reservation_with_its_reason(
    server, charger, key
):
    async with simulated(server, charger) as sim:
        made = await reserve(server, key, charger, 1)
        await in_state(made["id"], "active")
        sim.state.reservations.clear()  # the charger lost it (a reboot of its memory)
        response = await api(server, key, "POST", f"/api/v1/reservations/{made['id']}/cancel/")
        assert response.status_code == 202, response.text

        def refused() -> Reservation | None:
            row = Reservation.objects.get(pk=made["id"])
            return row if row.reason else None

        row = await eventually(refused, what="the refusal recorded")
        shown = await api(server, key, "GET", f"/api/v1/reservations/{made['id']}/")
    assert (row.state, row.reason) == ("active", "The charger did not cancel it (Rejected).")
    assert shown.json()["reason"] == row.reason
    assert [(c["action"], c["response_status"]) for c in shown.json()["commands"]] == [
        ("ReserveNow", "Accepted"),
        ("CancelReservation", "Rejected"),
    ]


async def test_an_occupied_connector_rejects_the_reservation(server, charger, key):
    async with simulated(server, charger) as sim:
        await finished(
            await create(charger, "RemoteStartTransaction", {"connectorId": 1, "idTag": "TAG-OK"})
        )
        await shows(charger, "Charging")
        made = await reserve(server, key, charger, 1)
        rejected = await in_state(made["id"], "rejected")
        sim.stop_events[1].set()
    assert rejected.reason == "Occupied"
    assert rejected.finished_at is not None


# --- Expiry ----------------------------------------------------------------------------------------


async def test_a_16_reservation_expires_by_the_sweep_as_the_charger_lets_it_lapse(
    server, charger, key
):
    async with simulated(server, charger):
        made = await reserve(server, key, charger, 1, seconds=4)
        await in_state(made["id"], "active")
        await shows(charger, "Reserved")
        # The 1.6 charger says nothing but its connector's status when the time passes.
        await shows(charger, "Available")
        await sync_to_async(sweep_reservations)()
        expired = await in_state(made["id"], "expired", timeout=2)
    assert expired.reason == "Its time passed without a session."
    assert expired.finished_at >= expired.expires_at


async def test_a_201_reservation_expires_when_the_charger_reports_it(server, charger, key):
    async with simulated(server, charger, "ocpp2.0.1"):
        made = await reserve(server, key, charger, 1, seconds=3)
        await in_state(made["id"], "active")
        await shows(charger, "Reserved")
        expired = await in_state(made["id"], "expired")
        await shows(charger, "Available")
    assert expired.reason == "The charger reported it Expired."
    assert await sync_to_async(
        ChargerEvent.objects.filter(
            charger=charger,
            kind=ChargerEvent.Kind.RESERVATION,
            status="Expired",
            request_id=made["reservation_id"],
        ).exists
    )()
