"""Real sessions over real sockets, priced: a 1.6 and a 2.0.1 charger run the same session against
the server process, and the tariff assigned to the site prices each exactly as by hand, from the
meter values, status changes and charging states the server recorded."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from billing import services
from billing.models import TariffAssignment, TariffVersion
from billing.pricing import PricedSession, price_session
from billing.selectors import session_timeline, tariff_spec, tariff_version_for_session
from chargers.models import Charger, ConnectorStatusChange, IdToken, Session, SessionState, Site
from cpms.models import Organization
from tests.conftest import CHARGER_PASSWORD, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

D = Decimal
SINCE = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@asynccontextmanager
async def connected(
    server: ServerProcess, identity: str, protocol: str, client_class: Any
) -> AsyncIterator[Any]:
    token = base64.b64encode(f"{identity}:{CHARGER_PASSWORD}".encode()).decode()
    async with websockets.connect(
        server.ocpp_url + identity,
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {token}"},
        open_timeout=10,
    ) as ws:
        client = client_class(identity, ws, response_timeout=30)
        reader = asyncio.create_task(client.start())
        try:
            yield client
        finally:
            reader.cancel()


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll until the server's batched writes have landed; the deadline only ends a hang."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout}s")
        await asyncio.sleep(0.1)


def day_tariff(organization: Organization, site: Site) -> None:
    """0.30/kWh, 1.20 per charging hour, 6.00 per idle hour after 15 minutes, VAT 19 %."""
    tariff = services.tariff_create(
        organization=organization,
        name="Depot day",
        currency="EUR",
        site=site,
        elements=[
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.30", "vat": "19"},
                    {"type": "TIME", "price": "1.20", "vat": "19"},
                    {"type": "PARKING_TIME", "price": "6.00", "vat": "19"},
                ]
            }
        ],
        parking_grace_seconds=900,
    )
    version = services.tariff_publish(version=tariff.versions.get())
    TariffVersion.objects.filter(pk=version.pk).update(effective_from=SINCE)
    TariffAssignment.objects.create(
        organization=organization, tariff=tariff, site=site, valid_from=SINCE
    )


def priced(session: Session) -> PricedSession:
    version = tariff_version_for_session(session=session)
    assert version is not None and version.tariff.name == "Depot day"
    return price_session(tariff_spec(version=version), session_timeline(session=session))


def assert_hand_calculation(result: PricedSession) -> None:
    # Tuesday 4 March 2025, 10:00-11:30 in Amsterdam. Charging 10:00-10:30 and 10:40-11:00
    # (50 min), idle 10:30-10:40 and 11:00-11:30 (40 min, 15 of them free), 10 kWh.
    # Energy 10 x 0.30 = 3.00; charging 50/60 h x 1.20 = 1.00; idle 25/60 h x 6.00 = 2.50.
    # 6.50 excluding VAT; VAT 19 % = 1.235 -> 1.24; 7.74 in all.
    assert [(ln.dimension, ln.amount_excl_vat) for ln in result.lines] == [
        ("ENERGY", D("3.00")),
        ("TIME", D("1.00")),
        ("PARKING_TIME", D("2.50")),
    ]
    assert result.energy_wh == D(10000)
    assert result.charging_seconds == D(3000)
    assert result.parking_seconds == D(2400)
    assert (result.total_excl_vat, result.total_vat, result.total_incl_vat) == (
        D("6.50"),
        D("1.24"),
        D("7.74"),
    )


async def test_a_1_6_session_is_priced_from_what_the_charger_sent(
    server: ServerProcess,
    organization: Organization,
    site: Site,
    charger: Charger,
    id_token: IdToken,
) -> None:
    await sync_to_async(day_tariff)(organization, site)
    async with connected(server, charger.identity, "ocpp1.6", ChargePoint16) as client:
        await client.call(
            call16.BootNotification(charge_point_vendor="Acme", charge_point_model="AC-22")
        )

        async def status(at: str, value: str) -> None:
            await client.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status=value, timestamp=at
                )
            )

        async def meter(at: str, wh: int, transaction_id: int) -> None:
            await client.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=transaction_id,
                    meter_value=[
                        {
                            "timestamp": at,
                            "sampled_value": [
                                {
                                    "value": str(wh),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                )
            )

        await status("2025-03-04T08:59:00Z", "Preparing")
        started = await client.call(
            call16.StartTransaction(
                connector_id=1, id_tag="TAG-OK", meter_start=1000, timestamp="2025-03-04T09:00:00Z"
            )
        )
        tx = started.transaction_id
        await status("2025-03-04T09:00:00Z", "Charging")
        await meter("2025-03-04T09:30:00Z", 6000, tx)
        await status("2025-03-04T09:30:00Z", "SuspendedEV")
        await meter("2025-03-04T09:40:00Z", 6000, tx)
        await status("2025-03-04T09:40:00Z", "Charging")
        await meter("2025-03-04T10:00:00Z", 11000, tx)
        await status("2025-03-04T10:00:00Z", "Finishing")
        await client.call(
            call16.StopTransaction(
                meter_stop=11000,
                timestamp="2025-03-04T10:30:00Z",
                transaction_id=tx,
                id_tag="TAG-OK",
            )
        )

    def recorded() -> Session | None:
        session = Session.objects.filter(charger=charger, state=SessionState.COMPLETED).first()
        changes = ConnectorStatusChange.objects.filter(connector__charger=charger).count()
        return session if session is not None and changes >= 5 else None

    session = await eventually(recorded)
    assert_hand_calculation(await sync_to_async(priced)(session))


async def test_a_2_0_1_session_is_priced_from_its_charging_states(
    server: ServerProcess,
    organization: Organization,
    site: Site,
    charger: Charger,
    id_token: IdToken,
) -> None:
    await sync_to_async(day_tariff)(organization, site)
    transaction = "tx-priced-201"
    async with connected(server, charger.identity, "ocpp2.0.1", ChargePoint201) as client:
        await client.call(
            call201.BootNotification(
                charging_station={"model": "DC-50", "vendor_name": "Acme"}, reason="PowerUp"
            )
        )
        steps = [
            ("Started", "2025-03-04T09:00:00Z", "Authorized", "Charging", 1000),
            ("Updated", "2025-03-04T09:30:00Z", "ChargingStateChanged", "SuspendedEV", 6000),
            ("Updated", "2025-03-04T09:40:00Z", "ChargingStateChanged", "Charging", 6000),
            ("Updated", "2025-03-04T10:00:00Z", "ChargingStateChanged", "EVConnected", 11000),
            ("Ended", "2025-03-04T10:30:00Z", "EVCommunicationLost", "EVConnected", 11000),
        ]
        for seq, (event, at, trigger, state, wh) in enumerate(steps):
            info: dict[str, Any] = {"transaction_id": transaction, "charging_state": state}
            extra: dict[str, Any] = {}
            if event == "Started":
                extra = {
                    "evse": {"id": 1, "connector_id": 1},
                    "id_token": {"id_token": "TAG-OK", "type": "ISO14443"},
                }
            if event == "Ended":
                info["stopped_reason"] = "EVDisconnected"
            await client.call(
                call201.TransactionEvent(
                    event_type=event,
                    timestamp=at,
                    trigger_reason=trigger,
                    seq_no=seq,
                    transaction_info=info,
                    meter_value=[
                        {
                            "timestamp": at,
                            "sampled_value": [
                                {
                                    "value": wh,
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit_of_measure": {"unit": "Wh"},
                                }
                            ],
                        }
                    ],
                    **extra,
                ),
                suppress=False,
            )

    session = await eventually(
        lambda: Session.objects.filter(
            charger=charger, transaction_id=transaction, state=SessionState.COMPLETED
        ).first()
    )
    assert session.ocpp_version == "2.0.1"
    assert_hand_calculation(await sync_to_async(priced)(session))
