"""Zombie sessions end to end: a charger on the real server leaves a session open on a connector
it reports Available; the reconciliation pass asks it (1.6 TriggerMessage, 2.x
GetTransactionStatus) and its answer closes the session, or keeps it, with an audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from chargers.models import Connector, Session, SessionState
from operations import tasks
from operations.models import ReconciliationCase
from tests.e2e.commanding import answering_charger, boot, eventually
from tests.e2e.worker import celery_worker  # noqa: F401 - the fixture

# The server's receivers hand the charger's answers to Celery.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def no_grace(settings: Any) -> None:
    # The pass in this process acts on doubts at once; the server's own pass keeps its grace.
    settings.CPMS_RECONCILIATION_GRACE = 0


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def connector_status(charger: Any, number: int, status: str) -> None:
    await eventually(
        lambda: Connector.objects.filter(
            charger=charger, connector_id=number, status=status
        ).exists(),
        what=f"connector {number} {status}",
    )


def case_of(session: Session) -> ReconciliationCase | None:
    return ReconciliationCase.objects.filter(session=session).first()


async def test_a_16_zombie_session_is_closed_after_the_charger_reports_its_connector_available(
    server, charger, id_token
):
    def trigger(client: Any, payload: dict[str, Any]) -> dict[str, str]:
        assert payload == {"requestedMessage": "StatusNotification", "connectorId": 1}
        # What a charger does: accept, then send the status it was asked for.
        asyncio.get_running_loop().create_task(
            client.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available", timestamp=now()
                )
            )
        )
        return {"status": "Accepted"}

    async with answering_charger(
        server.ocpp_url, charger.identity, {"TriggerMessage": trigger}
    ) as client:
        await boot(client)
        started = await client.call(
            call16.StartTransaction(
                connector_id=1, id_tag="TAG-OK", meter_start=1000, timestamp=now()
            ),
            suppress=False,
        )
        await client.call(
            call16.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[{"timestamp": now(), "sampled_value": [{"value": "1500"}]}],
            ),
            suppress=False,
        )
        await client.call(
            call16.StatusNotification(
                connector_id=1, error_code="NoError", status="Charging", timestamp=now()
            )
        )
        # The StopTransaction is lost: the connector is free, the session still open.
        await client.call(
            call16.StatusNotification(
                connector_id=1, error_code="NoError", status="Available", timestamp=now()
            )
        )
        await connector_status(charger, 1, "Available")
        session = await sync_to_async(Session.objects.get)(charger=charger)
        assert session.state == SessionState.ACTIVE

        await sync_to_async(tasks.reconcile.apply)()  # the periodic pass, here and now
        action, _ = await client.next_call()
        assert action == "TriggerMessage"
        closed = await eventually(
            lambda: Session.objects.filter(pk=session.pk, state=SessionState.COMPLETED).first(),
            timeout=45,
            what="the zombie session closed",
        )
    assert closed.stop_reason == "Reconciled"
    assert closed.meter_stop_wh == Decimal("1500")
    assert closed.energy_wh == Decimal("500")
    case = await sync_to_async(case_of)(session)
    assert case is not None
    assert (case.kind, case.state, case.resolution) == (
        "open_on_available",
        "resolved",
        "session_closed",
    )
    steps = await sync_to_async(lambda: list(case.entries.values_list("step", flat=True)))()
    assert steps[:2] == ["detected", "asked"]
    assert steps[-1] == "session_closed"
    closing = await sync_to_async(lambda: case.entries.get(step="session_closed"))()
    assert closing.detail["before"]["state"] == "Active"
    assert closing.detail["after"]["meter_stop_wh"] == "1500.000"


async def start_201(client: Any, transaction_id: str) -> None:
    await client.call(
        call201.TransactionEvent(
            event_type="Started",
            timestamp=now(),
            trigger_reason="Authorized",
            seq_no=0,
            transaction_info={"transaction_id": transaction_id},
            evse={"id": 1, "connector_id": 1},
            id_token={"id_token": "TAG-OK", "type": "ISO14443"},
        ),
        suppress=False,
    )
    await client.call(
        call201.StatusNotification(
            timestamp=now(), connector_status="Available", evse_id=1, connector_id=1
        ),
        suppress=False,
    )


async def test_a_201_zombie_session_is_closed_when_the_charger_says_it_is_not_ongoing(
    server, charger, id_token
):
    asked: list[dict[str, Any]] = []

    def status(client: Any, payload: dict[str, Any]) -> dict[str, Any]:
        asked.append(payload)
        return {"ongoingIndicator": False, "messagesInQueue": False}

    async with answering_charger(
        server.ocpp_url, charger.identity, {"GetTransactionStatus": status}, "ocpp2.0.1"
    ) as client:
        await boot(client)
        await start_201(client, "tx-zombie")
        await connector_status(charger, 1, "Available")
        session = await sync_to_async(Session.objects.get)(
            charger=charger, transaction_id="tx-zombie"
        )
        await sync_to_async(tasks.reconcile.apply)()  # the periodic pass, here and now
        closed = await eventually(
            lambda: Session.objects.filter(pk=session.pk, state=SessionState.COMPLETED).first(),
            timeout=45,
            what="the zombie session closed",
        )
    assert asked == [{"transactionId": "tx-zombie"}]
    assert closed.stop_reason == "Reconciled"
    case = await sync_to_async(case_of)(session)
    assert (case.state, case.resolution) == ("resolved", "session_closed")
    assert "not ongoing" in case.reason


async def test_a_201_session_the_charger_says_is_ongoing_stays_open(server, charger, id_token):
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"GetTransactionStatus": {"ongoingIndicator": True, "messagesInQueue": False}},
        "ocpp2.0.1",
    ) as client:
        await boot(client)
        await start_201(client, "tx-alive")
        await connector_status(charger, 1, "Available")
        session = await sync_to_async(Session.objects.get)(
            charger=charger, transaction_id="tx-alive"
        )
        await sync_to_async(tasks.reconcile.apply)()  # the periodic pass, here and now
        case = await eventually(
            lambda: ReconciliationCase.objects.filter(session=session, state="resolved").first(),
            timeout=45,
            what="the case resolved",
        )
    assert case.resolution == "ongoing"
    session = await sync_to_async(Session.objects.get)(pk=session.pk)
    assert session.state == SessionState.ACTIVE
