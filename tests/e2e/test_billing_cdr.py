"""Sessions over real sockets against the real server, priced into CDRs: a 1.6 and a 2.0.1
session with a time-of-use tariff and an idle fee, each CDR's lines checked against a hand
calculation; the cost the chargers are shown (OCA California Pricing DataTransfer on 1.6,
CostUpdated, SetDisplayMessage and totalCost on 2.0.1); the CDR in the API; its correction."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connections

from billing import record_services, services
from billing.models import (
    Cdr,
    CostDisplayRule,
    EnergyPrice,
    EnergyPricePeriod,
    Tariff,
    TariffVersion,
)
from chargers.models import Charger, ConnectorStatusChange, IdToken, Session, SessionState
from tests.billing.worker import celery_worker  # noqa: F401
from tests.e2e.commanding import basic_auth, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Tuesday 5 March 2024; the site is in Amsterdam (UTC+1): 16:00Z is 17:00 local.
T0 = datetime(2024, 3, 5, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Client:
    """A raw OCPP-J client that answers the server's CALLs and keeps them."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[list[Any]] = []
        self.ids = itertools.count(1)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        message_id = f"m-{next(self.ids)}"
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=30))
            if frame[0] == 2:
                await self._answer(frame)
                continue
            assert frame[1] == message_id, frame
            assert frame[0] == 3, frame
            return frame[2]

    async def _answer(self, frame: list[Any]) -> None:
        self.received.append(frame)
        await self.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

    async def drain(self, until: Callable[[], bool], timeout: float = 30.0) -> None:
        """Answer the server's CALLs until ``until()`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not until():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no such CALL within {timeout}s: {self.received}")
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=left))
            except TimeoutError:
                continue
            if frame[0] == 2:
                await self._answer(frame)

    def calls(self, action: str) -> list[dict[str, Any]]:
        return [f[3] for f in self.received if f[2] == action]


@asynccontextmanager
async def connect(server: Any, identity: str, protocol: str) -> AsyncIterator[Client]:
    async with websockets.connect(
        server.ocpp_url + identity,
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=basic_auth(identity),
        open_timeout=20,
    ) as ws:
        yield Client(ws)


def tou_tariff(charger: Charger) -> TariffVersion:
    """Energy 0.30/kWh, 0.50/kWh from 18:00 to 21:00 local; parking 6.00/h after 15 minutes;
    VAT 21 %."""
    tariff = services.tariff_create(
        organization=charger.organization,
        name="Depot time of use",
        currency="EUR",
        site=charger.site,
        elements=[
            {
                "price_components": [{"type": "ENERGY", "price": "0.50", "vat": 21}],
                "restrictions": {"start_time": "18:00", "end_time": "21:00"},
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.30", "vat": 21},
                    {"type": "PARKING_TIME", "price": "6.00", "vat": 21},
                ]
            },
        ],
        parking_grace_seconds=15 * 60,
        description="EUR 0.30/kWh, 0.50/kWh 18-21h, idle 6.00/h after 15 min",
    )
    version = services.tariff_publish(version=services.tariff_draft(tariff=tariff))
    TariffVersion.objects.filter(pk=version.pk).update(effective_from=T0 - timedelta(days=30))
    services.tariff_assign(tariff=tariff, site=charger.site, valid_from=T0 - timedelta(days=30))
    # What the site pays for energy: 0.10/kWh, 0.25/kWh from 18:00 to 21:00 local.
    price = EnergyPrice.objects.create(
        site=charger.site, valid_from=T0 - timedelta(days=30), price_per_kwh=Decimal("0.10")
    )
    EnergyPricePeriod.objects.create(
        energy_price=price, start_time=time(18), end_time=time(21), price_per_kwh=Decimal("0.25")
    )
    CostDisplayRule.objects.create(organization=charger.organization, charger=charger)
    version.refresh_from_db()
    return version


def lines_of(cdr: Cdr) -> list[tuple[str, Decimal, str, Decimal, Decimal]]:
    return [
        (line.component, line.quantity, line.unit, line.unit_price, line.amount_excl_vat)
        for line in cdr.lines.order_by("position")
    ]


def check_hand_calculation(cdr: Cdr) -> None:
    # 17:00-18:00 local: 10 kWh at 0.30 = 3.00; 18:00-19:00 local: 7 kWh at 0.50 = 3.50;
    # idle 19:00-19:30 local, 15 minutes after the grace: 0.25 h at 6.00 = 1.50.
    assert sorted(lines_of(cdr)) == sorted(
        [
            ("ENERGY", Decimal("10.000000"), "kWh", Decimal("0.30000"), Decimal("3.00")),
            ("ENERGY", Decimal("7.000000"), "kWh", Decimal("0.50000"), Decimal("3.50")),
            ("PARKING_TIME", Decimal("0.250000"), "h", Decimal("6.00000"), Decimal("1.50")),
        ]
    )
    # 8.00 excl. VAT, 21 % VAT on the sum = 1.68, 9.68 incl. VAT; the lines sum to the totals.
    assert (cdr.total_excl_vat, cdr.total_vat, cdr.total_incl_vat) == (
        Decimal("8.00"),
        Decimal("1.68"),
        Decimal("9.68"),
    )
    assert sum(line.vat for line in cdr.lines.all()) == Decimal("1.68")
    assert sum(line.amount_incl_vat for line in cdr.lines.all()) == Decimal("9.68")
    assert cdr.energy_wh == Decimal("17000")
    assert (cdr.charging_seconds, cdr.parking_seconds) == (7200, 1800)
    # Energy cost: 10 kWh at 0.10 + 7 kWh at 0.25 = 2.75; margin 8.00 - 2.75 = 5.25.
    assert (cdr.energy_cost, cdr.margin) == (Decimal("2.75"), Decimal("5.25"))


async def test_a_16_session_is_priced_into_a_cdr(
    server: Any,
    charger: Charger,
    id_token: IdToken,
    celery_worker: None,  # noqa: F811
) -> None:
    await sync_to_async(tou_tariff)(charger)
    async with connect(server, charger.identity, "ocpp1.6") as cp:
        await cp.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "W22"})
        await cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "status": "Preparing",
                "errorCode": "NoError",
                "timestamp": stamp(T0),
            },
        )
        await eventually(
            lambda: charger.connectors.filter(connector_id=1).exists(), what="connector 1"
        )
        start = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_token.token, "meterStart": 1000, "timestamp": stamp(T0)},
        )
        tx = start["transactionId"]
        # The tariff text for the driver (SetUserPrice).
        await cp.drain(lambda: any("SetUserPrice" in str(c) for c in cp.calls("DataTransfer")))
        for hour, register in ((1, 11000), (2, 18000)):
            await cp.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {
                            "timestamp": stamp(T0 + timedelta(hours=hour)),
                            "sampledValue": [
                                {
                                    "value": str(register),
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "Wh",
                                }
                            ],
                        }
                    ],
                },
            )
            if hour == 1:
                await cp.drain(
                    lambda: any("RunningCost" in str(c) for c in cp.calls("DataTransfer"))
                )
        await cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "status": "SuspendedEV",
                "errorCode": "NoError",
                "timestamp": stamp(T0 + timedelta(hours=2)),
            },
        )
        await eventually(
            lambda: ConnectorStatusChange.objects.filter(
                connector__charger=charger, status="SuspendedEV"
            ).exists(),
            what="the idle status",
        )
        stop = await cp.call(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": 18000,
                "timestamp": stamp(T0 + timedelta(hours=2, minutes=30)),
            },
        )
        assert stop == {}
        await cp.drain(lambda: any("FinalCost" in str(c) for c in cp.calls("DataTransfer")))

    messages = {c["messageId"]: json.loads(c["data"]) for c in cp.calls("DataTransfer")}
    assert {c["vendorId"] for c in cp.calls("DataTransfer")} == {"org.openchargealliance.costmsg"}
    assert messages["SetUserPrice"] == {
        "idToken": id_token.token,
        "priceText": "EUR 0.30/kWh, 0.50/kWh 18-21h, idle 6.00/h after 15 min",
    }
    # After the first hour: 10 kWh at 0.30 = 3.00 + 21 % = 3.63 so far.
    assert messages["RunningCost"]["cost"] == 3.63
    assert messages["RunningCost"]["transactionId"] == tx
    assert messages["RunningCost"]["meterValue"] == 11000
    assert messages["FinalCost"]["cost"] == 9.68
    assert messages["FinalCost"]["transactionId"] == tx

    cdr = await eventually(lambda: Cdr.objects.filter(session__charger=charger).first(), what="CDR")
    await sync_to_async(check_hand_calculation)(cdr)
    assert cdr.version == 1 and cdr.current and cdr.time_zone == "Europe/Amsterdam"
    # Idempotent: the task running again (a redelivery) changes nothing.
    again = await sync_to_async(record_services.cdr_create_for_session)(session_id=cdr.session_id)
    assert again is not None and again.pk == cdr.pk
    assert await sync_to_async(Cdr.objects.count)() == 1


async def test_a_201_session_is_priced_and_the_charger_shown_its_cost(
    server: Any,
    charger: Charger,
    id_token: IdToken,
    celery_worker: None,  # noqa: F811
) -> None:
    await sync_to_async(tou_tariff)(charger)

    def event(
        seq: int, event_type: str, at: datetime, register: int | None, **extra: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": stamp(at),
            "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
            "seqNo": seq,
            "transactionInfo": {"transactionId": "tx-201", **extra.pop("info", {})},
            "evse": {"id": 1, "connectorId": 1},
            **extra,
        }
        if register is not None:
            payload["meterValue"] = [
                {
                    "timestamp": stamp(at),
                    "sampledValue": [
                        {
                            "value": register,
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "Wh"},
                        }
                    ],
                }
            ]
        return payload

    async with connect(server, charger.identity, "ocpp2.0.1") as cs:
        await cs.call(
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"vendorName": "ACME", "model": "W22"}},
        )
        await cs.call(
            "TransactionEvent",
            event(
                0,
                "Started",
                T0,
                1000,
                trigger="Authorized",
                idToken={"idToken": id_token.token, "type": "ISO14443"},
                info={"chargingState": "Charging"},
            ),
        )
        await cs.drain(lambda: bool(cs.calls("SetDisplayMessage")))
        await cs.call("TransactionEvent", event(1, "Updated", T0 + timedelta(hours=1), 11000))
        await cs.drain(lambda: bool(cs.calls("CostUpdated")))
        await cs.call(
            "TransactionEvent",
            event(
                2,
                "Updated",
                T0 + timedelta(hours=2),
                18000,
                trigger="ChargingStateChanged",
                info={"chargingState": "SuspendedEV"},
            ),
        )
        ended = await cs.call(
            "TransactionEvent",
            event(
                3,
                "Ended",
                T0 + timedelta(hours=2, minutes=30),
                18000,
                trigger="EVDeparted",
                info={"stoppedReason": "EVDisconnected", "chargingState": "Idle"},
            ),
        )
        # The final cost in the answer to Ended.
        assert ended["totalCost"] == 9.68
        # The same Ended again (a lost answer) gets the same answer.
        resent = await cs.call(
            "TransactionEvent",
            event(
                3,
                "Ended",
                T0 + timedelta(hours=2, minutes=30),
                18000,
                trigger="EVDeparted",
                info={"stoppedReason": "EVDisconnected", "chargingState": "Idle"},
            ),
        )
        assert resent["totalCost"] == 9.68

    display = cs.calls("SetDisplayMessage")[0]["message"]
    assert display["transactionId"] == "tx-201"
    assert (
        display["message"]["content"] == "EUR 0.30/kWh, 0.50/kWh 18-21h, idle 6.00/h after 15 min"
    )
    assert cs.calls("CostUpdated")[0] == {"totalCost": 3.63, "transactionId": "tx-201"}

    session = await sync_to_async(Session.objects.get)(charger=charger)
    assert session.state == SessionState.COMPLETED
    cdr = await eventually(lambda: Cdr.objects.filter(session=session).first(), what="CDR")
    await sync_to_async(check_hand_calculation)(cdr)


def test_a_correction_is_a_new_version_pointing_to_the_old(
    transactional_db: Any, charger: Charger, id_token: IdToken
) -> None:
    version = tou_tariff(charger)
    session = Session.objects.create(
        charger=charger,
        connector_number=1,
        id_token=id_token,
        id_tag=id_token.token,
        transaction_id="77",
        start_key="s-77",
        state=SessionState.COMPLETED,
        started_at=T0,
        stopped_at=T0 + timedelta(hours=1),
        meter_start_wh=Decimal(0),
        meter_stop_wh=Decimal(10000),
        energy_wh=Decimal(10000),
    )
    first = record_services.cdr_create_for_session(session_id=session.pk)
    assert first is not None and first.total_excl_vat == Decimal("3.00")
    # The meter reading was wrong and is fixed; the CDR is corrected, not changed.
    Session.objects.filter(pk=session.pk).update(
        meter_stop_wh=Decimal(12000), energy_wh=Decimal(12000)
    )
    second = record_services.cdr_correct(cdr=first, reason="Meter stop value fixed")
    first.refresh_from_db()
    assert (first.current, first.total_excl_vat, first.energy_wh) == (
        False,
        Decimal("3.00"),
        Decimal(10000),
    )
    assert (second.version, second.replaces_id, second.current) == (2, first.pk, True)
    assert (second.total_excl_vat, second.reason) == (Decimal("3.60"), "Meter stop value fixed")
    assert list(first.lines.values_list("amount_excl_vat", flat=True)) == [Decimal("3.00")]
    # The old version cannot be corrected again; the session's CDR is the new one.
    with pytest.raises(record_services.NothingToCorrect):
        record_services.cdr_correct(cdr=first, reason="again")
    assert record_services.cdr_create_for_session(session_id=session.pk) == second
    assert Tariff.objects.get().pk == version.tariff_id


def test_a_running_sessions_page_shows_its_cost_so_far(
    transactional_db: Any, charger: Charger, id_token: IdToken, client: Any
) -> None:
    from django.contrib.auth.models import User

    from chargers.models import MeterSample
    from cpms.models import Membership, Role

    tou_tariff(charger)
    session = Session.objects.create(
        charger=charger,
        connector_number=1,
        id_token=id_token,
        id_tag=id_token.token,
        transaction_id="88",
        start_key="s-88",
        state=SessionState.ACTIVE,
        started_at=T0,
        meter_start_wh=Decimal(0),
    )
    MeterSample.objects.create(
        charger=charger,
        connector_number=1,
        session=session,
        timestamp=T0 + timedelta(hours=1),
        measurand="Energy.Active.Import.Register",
        value=Decimal(5000),
        unit="Wh",
    )
    user = User.objects.create_user("op", password="a-long-password-1")
    Membership.objects.create(user=user, organization=charger.organization, role=Role.OPERATOR)
    client.force_login(user)
    page = client.get(f"/sessions/{session.pk}/").content.decode()
    # 5 kWh at 0.30 before 18:00 local = 1.50, + 21 % VAT = 1.82 (1.815 rounded half up)
    assert "so far, as of" in page
    assert '<td class="num" id="session-cost-total">1.82</td>' in page


@pytest.mark.usefixtures("celery_worker")
def test_a_session_whose_end_was_missed_gets_its_cdr(
    transactional_db: Any, charger: Charger, id_token: IdToken
) -> None:
    from django.utils import timezone

    from billing import tasks
    from tests.billing.worker import wait_for

    tou_tariff(charger)
    # Written directly: no session.ended event, as if the receiver had never run.
    stopped = timezone.now() - timedelta(hours=1)
    session = Session.objects.create(
        charger=charger,
        connector_number=1,
        id_token=id_token,
        id_tag=id_token.token,
        transaction_id="99",
        start_key="s-99",
        state=SessionState.COMPLETED,
        started_at=stopped - timedelta(hours=1),
        stopped_at=stopped,
        meter_start_wh=Decimal(0),
        meter_stop_wh=Decimal(1000),
        energy_wh=Decimal(1000),
    )
    assert record_services.sessions_without_cdr(since=stopped - timedelta(days=1)) == [session.pk]
    assert tasks.cdrs_missing() == 1
    cdr = wait_for(lambda: Cdr.objects.filter(session=session).first(), what="CDR")
    assert cdr.energy_wh == Decimal(1000)
    assert record_services.sessions_without_cdr(since=stopped - timedelta(days=1)) == []
