"""The alert rules, driven the way the system drives them: domain events after commit, and
the periodic check."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from chargers import alert_monitor, events
from chargers.alert_monitor import monitoring_check
from chargers.models import (
    Alert,
    AlertCondition,
    Charger,
    ChargerEvent,
    Connector,
    MeterSample,
    Session,
)
from tests.chargers.conftest import T0, Clock
from tests.conftest import booted

pytestmark = pytest.mark.django_db(transaction=True)


def emit(charger: Charger, event: str, **data: Any) -> None:
    events.notify(
        event, organization_pk=charger.organization_id, charger=charger.identity, data=data
    )


def stamp(clock: Clock) -> str:
    return clock.now.isoformat()


@override_settings(CPMS_ALERT_OFFLINE_GRACE=120)
def test_a_closed_socket_is_an_alert_only_once_the_grace_period_passes(online, clock, heard):
    notified, _ = heard
    emit(online, "charger.disconnected", close_code=1006)
    Charger.objects.filter(pk=online.pk).update(connected=False)
    clock.advance(60)
    emit(online, "charger.connected", ocpp_version="1.6")
    Charger.objects.filter(pk=online.pk).update(connected=True, last_seen=clock.now)
    clock.advance(120)
    monitoring_check()
    assert not Alert.objects.exists()

    emit(online, "charger.disconnected", close_code=1006)
    Charger.objects.filter(pk=online.pk).update(connected=False)
    disconnected_at = clock.now
    clock.advance(119)
    assert monitoring_check().promoted == 0
    clock.advance(1)
    assert monitoring_check().promoted == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.state) == ("offline", "critical", "open")
    assert alert.fault_at == disconnected_at
    assert alert.mttd_seconds == 120.0
    assert alert.details == {"close_code": 1006, "reason": "closed"}

    clock.advance(180)
    emit(online, "charger.connected", ocpp_version="1.6")
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert alert.mttr_seconds == 180.0
    assert [e for _, e in notified] == ["raised", "resolved"]


@override_settings(CPMS_ALERT_OFFLINE_HEARTBEATS=2, CPMS_ALERT_OFFLINE_GRACE=30)
def test_a_silent_charger_is_offline_and_back_when_it_speaks_again(online, clock):
    Charger.objects.filter(pk=online.pk).update(heartbeat_interval=30)
    clock.advance(60)
    assert monitoring_check().offline == 1
    clock.advance(15)
    assert monitoring_check().back_online == 0
    Charger.objects.filter(pk=online.pk).update(last_seen=clock.now)
    assert monitoring_check().back_online == 1
    alert = Alert.objects.get()
    assert alert.state == "resolved"
    assert (alert.mttd_seconds, alert.mttr_seconds) == (60.0, 15.0)


@override_settings(CPMS_ALERT_BOOT_LOOP_COUNT=3, CPMS_ALERT_BOOT_LOOP_WINDOW=600)
def test_boot_loops(online, clock):
    def boot() -> None:
        ChargerEvent.objects.create(
            charger=online, kind=ChargerEvent.Kind.BOOT, status="Accepted", timestamp=clock.now
        )
        emit(online, "charger.booted", status="Accepted")

    boot()
    clock.advance(400)  # the first boot leaves the window before the third
    boot()
    clock.advance(250)
    boot()
    assert not Alert.objects.exists()
    clock.advance(100)
    boot()
    alert = Alert.objects.get()
    assert (alert.kind, alert.connector_id) == ("boot_loop", 0)
    assert alert.details["boots"] == 3
    assert alert.fault_at == T0 + timedelta(seconds=400)  # the first boot of the loop
    boot()
    assert Alert.objects.count() == 1

    clock.advance(599)
    assert monitoring_check().boot_loops_ended == 0
    clock.advance(2)
    assert monitoring_check().boot_loops_ended == 1
    alert.refresh_from_db()
    assert alert.state == "resolved"


@override_settings(CPMS_ALERT_DEBOUNCE=30)
def test_a_faulted_connector_with_an_error_code(online, clock, heard):
    notified, _ = heard
    Connector.objects.create(
        charger=online,
        connector_id=2,
        status="Faulted",
        error_code="GroundFailure",
        vendor_error_code="E42",
    )
    emit(
        online,
        "connector.status",
        connector=2,
        status="Faulted",
        error_code="GroundFailure",
        timestamp=stamp(clock),
    )
    assert not Alert.objects.exists()
    assert AlertCondition.objects.count() == 2

    clock.advance(30)
    emit(
        online,
        "connector.status",
        connector=2,
        status="Faulted",
        error_code="GroundFailure",
        timestamp=stamp(clock),
    )
    faulted = Alert.objects.get(kind="connector_faulted")
    error = Alert.objects.get(kind="charger_error")
    assert faulted.connector_id == error.connector_id == 2
    assert faulted.message == "Connector 2 is faulted (GroundFailure)"
    assert error.message == "Connector 2 reports GroundFailure (vendor code E42)"
    assert error.severity == "major"
    assert error.details["vendor_error_code"] == "E42"
    assert faulted.mttd_seconds == 30.0

    # Another connector carries on.
    emit(
        online,
        "connector.status",
        connector=1,
        status="Available",
        error_code="NoError",
        timestamp=stamp(clock),
    )
    assert Alert.objects.filter(state="open").count() == 2

    clock.advance(45)
    emit(
        online,
        "connector.status",
        connector=2,
        status="Available",
        error_code="NoError",
        timestamp=stamp(clock),
    )
    assert set(Alert.objects.values_list("state", flat=True)) == {"resolved"}
    faulted.refresh_from_db()
    assert faulted.mttr_seconds == 45.0
    assert sorted(e for _, e in notified) == ["raised", "raised", "resolved", "resolved"]


@override_settings(CPMS_ALERT_DEBOUNCE=0)
def test_a_warning_code_on_a_charging_connector_is_an_error_not_a_fault(online, clock):
    emit(
        online,
        "connector.status",
        connector=1,
        status="Charging",
        error_code="HighTemperature",
        timestamp=stamp(clock),
    )
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity) == ("charger_error", "warning")


@override_settings(CPMS_ALERT_DEBOUNCE=0)
def test_ocpp2_problems_reported_as_events(online, clock):
    def event(value: str, *, cleared: bool = False) -> None:
        detail = {
            "eventId": 7,
            "trigger": "Alerting",
            "actualValue": value,
            "techCode": "RCD-TRIP",
            "component": {
                "name": "ConnectorPlugRetentionLock",
                "evse": {"id": 1, "connectorId": 1},
            },
            "variable": {"name": "Problem"},
            **({"cleared": True} if cleared else {}),
        }
        record = ChargerEvent.objects.create(
            charger=online,
            kind=ChargerEvent.Kind.DEVICE_EVENT,
            status=value,
            timestamp=clock.now,
            detail=detail,
        )
        emit(
            online,
            "charger.event",
            kind="DeviceEvent",
            status=value,
            request_id=None,
            event_pk=record.pk,
        )

    event("true")
    alert = Alert.objects.get()
    assert (alert.kind, alert.connector_id, alert.severity) == ("charger_error", 1, "major")
    assert alert.details["error_code"] == "RCD-TRIP"
    clock.advance(10)
    event("false", cleared=True)
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.mttr_seconds == 10.0


def make_session(charger: Charger, number: int, clock: Clock) -> Session:
    connector = Connector.objects.create(charger=charger, connector_id=number, status="Charging")
    return Session.objects.create(
        charger=charger,
        connector=connector,
        connector_number=number,
        transaction_id=str(100 + number),
        start_key=f"k{number}",
        started_at=clock.now,
        meter_start_wh=Decimal(0),
    )


def meter(charger: Charger, session: Session, value: str, at: Any) -> None:
    emit(
        charger,
        "session.meter",
        session=session.pk,
        transaction_id=session.transaction_id,
        connector=session.connector_number,
        state="Active",
        energy_wh="0",
        samples=[
            {
                "measurand": "Energy.Active.Import.Register",
                "phase": "",
                "value": value,
                "unit": "Wh",
                "timestamp": at.isoformat(),
            },
            {
                "measurand": "Power.Active.Import",
                "phase": "",
                "value": "1.0",
                "unit": "W",
                "timestamp": at.isoformat(),
            },
        ],
    )


def test_a_meter_that_goes_backwards(online, clock):
    session = make_session(online, 1, clock)
    meter(online, session, "1000", clock.now)
    meter(online, session, "1500", clock.advance(60))
    meter(online, session, "1200", clock.now - timedelta(seconds=30))  # late, reordered: ignored
    assert not Alert.objects.exists()
    meter(online, session, "900", clock.advance(60))
    alert = Alert.objects.get()
    assert (alert.kind, alert.connector_id) == ("meter_backwards", 1)
    assert alert.details["previous_wh"] == "1500" and alert.details["current_wh"] == "900"
    assert alert.message == "Energy register went back from 1500 Wh to 900 Wh in transaction 101"
    meter(online, session, "950", clock.advance(60))
    assert Alert.objects.count() == 1
    emit(online, "session.ended", session=session.pk, connector=1, transaction_id="101")
    # The session's last reading is forgotten with it.
    meter(online, session, "10", clock.advance(60))
    assert Alert.objects.count() == 1


@override_settings(CPMS_ALERT_SILENT_SESSION=600)
def test_a_charging_session_gone_silent(online, clock, heard):
    notified, _ = heard
    session = make_session(online, 1, clock)

    def check() -> Any:
        # The charger itself keeps heartbeating.
        Charger.objects.filter(pk=online.pk).update(last_seen=clock.now)
        return monitoring_check()

    MeterSample.objects.create(
        charger=online,
        connector_number=1,
        session=session,
        timestamp=clock.now,
        value=Decimal(10),
        unit="Wh",
    )
    clock.advance(599)
    assert check().silent_sessions == 0
    clock.advance(1)
    assert check().silent_sessions == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.connector_id, alert.fault_at) == ("silent_session", 1, T0)
    assert alert.mttd_seconds == 600.0
    assert not alert.suppressed
    check()
    assert Alert.objects.count() == 1

    MeterSample.objects.create(
        charger=online,
        connector_number=1,
        session=session,
        timestamp=clock.advance(30),
        value=Decimal(20),
        unit="Wh",
    )
    check()
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.mttr_seconds == 30.0
    assert [e for _, e in notified] == ["raised", "resolved"]


@override_settings(
    CPMS_ALERT_SILENT_SESSION=60, CPMS_ALERT_OFFLINE_GRACE=120, CPMS_ALERT_DEBOUNCE=0
)
def test_an_offline_charger_raises_one_alert_not_a_storm(online, clock, heard):
    notified, _ = heard
    sessions = [make_session(online, n, clock) for n in (1, 2, 3)]
    emit(online, "charger.disconnected", close_code=1006)
    Charger.objects.filter(pk=online.pk).update(connected=False)
    for _ in range(10):
        clock.advance(15)
        monitoring_check()
    offline = Alert.objects.get(kind="offline")
    silent = Alert.objects.filter(kind="silent_session")
    assert silent.count() == len(sessions)
    assert all(a.suppressed and a.suppressed_by_id == offline.pk for a in silent)
    assert notified == [(offline.pk, "raised")]


@override_settings(CPMS_ALERT_SILENT_SESSION=60)
def test_a_silent_session_that_ends_clears_its_alert(online, clock):
    session = make_session(online, 1, clock)
    clock.advance(60)
    Charger.objects.filter(pk=online.pk).update(last_seen=clock.now)
    monitoring_check()
    alert = Alert.objects.get(kind="silent_session")
    clock.advance(5)
    emit(online, "session.ended", session=session.pk, connector=1, transaction_id="101")
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.mttr_seconds == 5.0


def status(charger: Charger, connector: int, state: str, clock: Clock) -> events.DomainEvent:
    error = "GroundFailure" if state == "Faulted" else "NoError"
    data = {"connector": connector, "status": state, "error_code": error, "timestamp": stamp(clock)}
    return events.DomainEvent("connector.status", charger.organization_id, charger.identity, data)


@override_settings(CPMS_ALERT_DEBOUNCE=0)
def test_a_transactions_healthy_statuses_are_checked_together_and_still_clear(
    online, make_charger, clock
):
    # Twenty chargers' statuses in one group commit, one of them with a fault to clear.
    fleet = [online, *(make_charger(f"CP-FLEET-{n}") for n in range(19))]
    events.notify_many([status(online, 1, "Faulted", clock)])
    assert Alert.objects.filter(kind="connector_faulted", state="open").count() == 1
    clock.advance(30)
    healthy = [status(charger, n, "Available", clock) for charger in fleet for n in (0, 1, 2)]
    with CaptureQueriesContext(connection) as queries:
        events.notify_many(healthy)
    assert set(Alert.objects.values_list("state", flat=True)) == {"resolved"}
    # Two reads found the one charger with something to clear; only its statuses were checked
    # one by one, and the other nineteen chargers' fifty-seven cost nothing more.
    statements = [query["sql"] for query in queries.captured_queries]
    together = [sql for sql in statements if "CP-FLEET-7" in sql]
    assert len(together) == 2
    assert all("CP-FLEET-1" in sql and online.identity in sql for sql in together)
    one_by_one = [sql for sql in statements if sql.startswith('SELECT 1 AS "a"')]
    assert 0 < len(one_by_one) <= 3 * 2
    assert all(online.identity in sql and "CP-FLEET" not in sql for sql in one_by_one)


@override_settings(CPMS_ALERT_OFFLINE_GRACE=0)
def test_what_an_event_raises_is_cleared_by_a_later_event_of_the_same_transaction(online, clock):
    other = Charger.objects.create(
        identity="CP-OTHER", organization_id=online.organization_id, connected=True
    )
    # Both chargers start with nothing active; the first drops and comes back in one batch.
    events.notify_many(
        [
            events.DomainEvent("charger.disconnected", online.organization_id, online.identity, {}),
            events.DomainEvent("charger.connected", other.organization_id, other.identity, {}),
            events.DomainEvent("charger.connected", online.organization_id, online.identity, {}),
        ]
    )
    assert not AlertCondition.objects.exists()
    assert not Alert.objects.filter(state__in=["open", "acknowledged"]).exists()


@pytest.fixture
def rebooting(make_charger: Any, clock: Clock) -> dict[str, Charger]:
    """Chargers' boots before the storm (seconds before now), each also booting now: two in a
    loop, one whose first boot has left the window, and fifty that booted once."""
    chargers = {}
    history = {"LOOP-1": [500, 200, 0], "LOOP-2": [100, 50, 0], "EDGE": [700, 300, 0]}
    history.update({f"ONCE-{n}": [0] for n in range(50)})
    for identity, ago in history.items():
        chargers[identity] = make_charger(
            identity, password=None, connected=True, last_seen=clock.now
        )
        ChargerEvent.objects.bulk_create(
            ChargerEvent(
                charger=chargers[identity],
                kind=ChargerEvent.Kind.BOOT,
                status="Accepted",
                timestamp=clock.now - timedelta(seconds=seconds),
            )
            for seconds in ago
        )
    return chargers


def boot_storm(chargers: dict[str, Charger], once: int) -> list[events.DomainEvent]:
    """The loops among chargers that booted once, in an order not the chargers' order; LOOP-2
    boots twice, and LOOP-1 drops before its boot and is back after it."""
    rest = [booted(chargers[f"ONCE-{n}"]) for n in range(once)]
    loop_1 = chargers["LOOP-1"]
    return [
        events.DomainEvent("charger.disconnected", loop_1.organization_id, loop_1.identity, {}),
        booted(chargers["LOOP-2"]),
        *rest[: once // 2],
        booted(chargers["EDGE"]),
        booted(loop_1),
        events.DomainEvent("charger.connected", loop_1.organization_id, loop_1.identity, {}),
        *rest[once // 2 :],
        booted(chargers["LOOP-2"]),
    ]


def alerts_now() -> list[tuple[Any, ...]]:
    return list(
        Alert.objects.order_by("pk").values_list(
            "charger__identity", "kind", "state", "fault_at", "message", "details", "occurrences"
        )
    )


def forget_alerts() -> None:
    Alert.objects.all().delete()
    AlertCondition.objects.all().delete()


@override_settings(
    CPMS_ALERT_BOOT_LOOP_COUNT=3, CPMS_ALERT_BOOT_LOOP_WINDOW=600, CPMS_ALERT_OFFLINE_GRACE=0
)
def test_a_transactions_boots_raise_the_boot_loops_one_by_one_would(rebooting, clock):
    batch = boot_storm(rebooting, 10)
    events.notify_many(batch)
    raised = alerts_now()
    assert [(identity, kind, state) for identity, kind, state, *_ in raised] == [
        ("LOOP-1", "offline", "resolved"),
        ("LOOP-2", "boot_loop", "open"),
        ("LOOP-1", "boot_loop", "open"),
    ]
    loop_2 = raised[1]
    assert loop_2[3:] == (
        T0 - timedelta(seconds=100),
        "3 boots within 10 min",
        {"boots": 3, "window_seconds": 600.0},
        2,  # it booted twice in the storm
    )
    assert raised[2][3] == T0 - timedelta(seconds=500)

    forget_alerts()
    for event in batch:
        events.notify_many([event])
    assert alerts_now() == raised


@override_settings(
    CPMS_ALERT_BOOT_LOOP_COUNT=3, CPMS_ALERT_BOOT_LOOP_WINDOW=600, CPMS_ALERT_OFFLINE_GRACE=0
)
def test_a_storm_of_boots_costs_the_same_queries_for_few_chargers_as_for_many(rebooting, clock):
    def queries(batch: list[events.DomainEvent]) -> list[str]:
        forget_alerts()
        with CaptureQueriesContext(connection) as captured:
            alert_monitor.receive_many(events=batch)
        return [query["sql"] for query in captured.captured_queries]

    few, many = queries(boot_storm(rebooting, 5)), queries(boot_storm(rebooting, 50))
    assert len(few) == len(many)
    # The chargers are read by identity once for their boots, and twice for anything to clear
    # (their alerts, their pending conditions).
    assert len([sql for sql in many if "ONCE-49" in sql]) == 2 + 1
    assert Alert.objects.filter(kind="boot_loop").count() == 2


@override_settings(CPMS_ALERT_OFFLINE_GRACE=0)
def test_a_handler_that_fails_for_one_event_leaves_the_others_handled(online, monkeypatch):
    from chargers import alert_monitor

    def broken(*, identity: str, data: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(alert_monitor._HANDLERS, "charger.connected", broken)
    other = Charger.objects.create(
        identity="CP-OTHER", organization_id=online.organization_id, connected=True
    )
    events.notify_many(
        [
            events.DomainEvent("charger.connected", other.organization_id, other.identity, {}),
            events.DomainEvent("charger.disconnected", online.organization_id, online.identity, {}),
        ]
    )
    assert Alert.objects.filter(charger=online, kind="offline").exists() or (
        AlertCondition.objects.filter(charger=online, kind="offline").exists()
    )
