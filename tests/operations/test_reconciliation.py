"""Reconciliation services against the database: what is detected, how answers and unknown stops
are settled, what operators do, and the audit trail each step leaves. Delivery to a real charger
is tested end to end in tests/e2e/test_reconciliation.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from chargers.commands import CommandState
from chargers.models import (
    Command,
    Connector,
    MeterSample,
    Session,
    SessionState,
    UnmatchedStop,
)
from operations import reconciliation
from operations.models import ReconciliationCase

pytestmark = pytest.mark.django_db

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
LATER = T0 + timedelta(hours=1)


@pytest.fixture(autouse=True)
def grace(settings: Any) -> None:
    settings.CPMS_RECONCILIATION_GRACE = 120


@pytest.fixture
def online(charger):
    charger.connected = True
    charger.ocpp_version = "1.6"
    charger.channel_name = "specific.test!1"
    charger.save()
    return charger


def open_session(charger, *, tx="101", tag="TAG-1", status="Charging", status_at=None, **kw):
    connector, _ = Connector.objects.update_or_create(
        charger=charger,
        connector_id=1,
        defaults={"status": status, "status_at": status_at or T0},
    )
    return Session.objects.create(
        charger=charger,
        connector=connector,
        connector_number=1,
        transaction_id=tx,
        start_key=f"start-{tx}",
        id_tag=tag,
        started_at=T0,
        meter_start_wh=Decimal("1000"),
        ocpp_version=charger.ocpp_version or "1.6",
        **kw,
    )


def meter(session, minutes, wh):
    MeterSample.objects.create(
        charger_id=session.charger_id,
        connector_number=1,
        session=session,
        timestamp=T0 + timedelta(minutes=minutes),
        value=Decimal(wh),
        unit="Wh",
    )


def steps(case):
    return list(case.entries.values_list("step", flat=True))


# --- Detection ------------------------------------------------------------------------------------


def test_a_session_open_on_an_available_connector_is_detected_once_the_grace_has_passed(charger):
    session = open_session(charger, status="Available", status_at=T0 + timedelta(minutes=30))
    assert reconciliation.reconciliation_detect(now=T0 + timedelta(minutes=31)) == []
    [case] = reconciliation.reconciliation_detect(now=LATER)
    assert (case.kind, case.session, case.state) == ("open_on_available", session, "open")
    assert steps(case) == ["detected"]
    # The same doubt never opens a second case.
    assert reconciliation.reconciliation_detect(now=LATER) == []


def test_a_connector_that_was_available_before_the_session_started_is_no_doubt(charger):
    open_session(charger, status="Available", status_at=T0 - timedelta(minutes=1))
    assert reconciliation.reconciliation_detect(now=LATER) == []


def test_a_charging_connector_is_no_doubt(charger):
    open_session(charger, status="Charging", status_at=T0 + timedelta(minutes=5))
    assert reconciliation.reconciliation_detect(now=LATER) == []


def test_a_reboot_after_the_start_with_no_stop_is_detected(charger):
    session = open_session(charger)
    charger.last_boot_at = T0 + timedelta(minutes=20)
    charger.save()
    [case] = reconciliation.reconciliation_detect(now=LATER)
    assert (case.kind, case.session) == ("reboot_without_stop", session)


def test_a_stop_for_an_unknown_transaction_is_detected(charger):
    stop = UnmatchedStop.objects.create(
        charger=charger,
        transaction_id="999",
        timestamp=T0,
        payload={},
        received_at=T0,
    )
    [case] = reconciliation.reconciliation_detect(now=LATER)
    assert (case.kind, case.unmatched_stop) == ("unknown_stop", stop)


# --- Asking and answers -----------------------------------------------------------------------------


def test_a_16_case_is_put_to_the_charger_as_a_trigger_for_its_connector_status(online):
    session = open_session(online, status="Available", status_at=T0 + timedelta(minutes=1))
    result = reconciliation.reconciliation_run(now=LATER)
    assert (result.detected, result.asked) == (1, 1)
    case = ReconciliationCase.objects.get(session=session)
    assert case.state == "asked"
    assert (case.command.action, case.command.payload) == (
        "TriggerMessage",
        {"requestedMessage": "StatusNotification", "connectorId": 1},
    )
    assert case.command.system == "reconciliation"
    assert steps(case) == ["detected", "asked"]


def test_a_201_case_asks_for_the_transaction_status(online):
    online.ocpp_version = "2.0.1"
    online.save()
    session = open_session(online, tx="tx-a", status="Available", status_at=T0)
    reconciliation.reconciliation_run(now=LATER)
    case = ReconciliationCase.objects.get(session=session)
    assert (case.command.action, case.command.payload) == (
        "GetTransactionStatus",
        {"transactionId": "tx-a"},
    )


def test_an_offline_charger_is_asked_once_it_is_back(charger):
    charger.ocpp_version = "1.6"
    charger.save()
    session = open_session(charger, status="Available", status_at=T0)
    result = reconciliation.reconciliation_run(now=LATER)
    assert (result.detected, result.asked) == (1, 0)
    case = ReconciliationCase.objects.get(session=session)
    assert (case.state, case.command) == ("open", None)
    assert not Command.objects.exists()


def answer(case, state, response=None, status=""):
    Command.objects.filter(pk=case.command_id).update(
        state=state, response=response, response_status=status
    )
    return reconciliation.reconciliation_answer_record(command_pk=case.command_id)


def asked_case(charger, **kw):
    session = open_session(charger, **kw)
    reconciliation.reconciliation_run()  # asked now: the charger has the grace period to answer
    return ReconciliationCase.objects.get(session=session)


def test_a_refused_trigger_is_decided_on_the_last_status(online):
    case = asked_case(online, status="Available", status_at=T0 + timedelta(minutes=40))
    meter(case.session, 30, "4200.5")
    assert answer(case, CommandState.REJECTED, {"status": "Rejected"}, "Rejected") == "resolved"
    session = Session.objects.get(pk=case.session_id)
    assert session.state == SessionState.COMPLETED
    assert session.stop_reason == "Reconciled"
    assert session.meter_stop_wh == Decimal("4200.500")
    assert session.energy_wh == Decimal("3200.500")
    # It ended when the connector said Available, not when we found out.
    assert session.stopped_at == T0 + timedelta(minutes=40)
    case.refresh_from_db()
    assert case.resolution == "session_closed"
    assert steps(case) == ["detected", "asked", "answer", "session_closed"]


def test_an_accepted_trigger_waits_for_the_status_it_promised(online):
    case = asked_case(online, status="Available", status_at=T0 + timedelta(minutes=1))
    assert answer(case, CommandState.ACCEPTED, {"status": "Accepted"}, "Accepted") == "asked"
    case.refresh_from_db()
    assert case.state == "asked"
    # The connector now reports Charging: the session runs.
    connector = case.session.connector
    connector.history.create(status="Charging", timestamp=LATER)
    assert reconciliation.reconciliation_charger_statuses(charger_identity=online.identity) == 1
    case.refresh_from_db()
    assert (case.state, case.resolution) == ("resolved", "ongoing")
    assert Session.objects.get(pk=case.session_id).state == SessionState.ACTIVE


def test_a_transaction_with_messages_still_queued_is_asked_again_later(online):
    online.ocpp_version = "2.0.1"
    online.save()
    case = asked_case(online, status="Available", status_at=T0)
    answer(case, CommandState.ANSWERED, {"messagesInQueue": True})
    case.refresh_from_db()
    assert case.state == "open"
    assert Session.objects.get(pk=case.session_id).state == SessionState.ACTIVE


def test_a_timed_out_question_is_asked_again(online):
    case = asked_case(online, status="Available", status_at=T0)
    answer(case, CommandState.TIMEOUT)
    case.refresh_from_db()
    assert case.state == "open"
    assert steps(case)[-1] == "not_answered"


def test_a_session_the_charger_stops_itself_resolves_its_case(online):
    case = asked_case(online, status="Available", status_at=T0)
    Session.objects.filter(pk=case.session_id).update(
        state=SessionState.COMPLETED, stop_reason="Local"
    )
    reconciliation.reconciliation_run()
    case.refresh_from_db()
    assert (case.state, case.resolution) == ("resolved", "stopped_by_charger")


# --- Unknown stops ------------------------------------------------------------------------------------


def unknown_stop(charger, tag="TAG-1"):
    return UnmatchedStop.objects.create(
        charger=charger,
        transaction_id="777",
        id_tag=tag,
        meter_stop_wh=Decimal("5000"),
        timestamp=T0 + timedelta(minutes=50),
        reason="Local",
        payload={"transactionId": 777},
        received_at=T0 + timedelta(minutes=50),
    )


def test_an_unknown_stop_corrects_the_one_open_session_it_can_end(charger):
    session = open_session(charger)
    stop = unknown_stop(charger)
    reconciliation.reconciliation_run(now=LATER)
    case = ReconciliationCase.objects.get(unmatched_stop=stop)
    assert (case.state, case.resolution, case.session_id) == (
        "resolved",
        "session_corrected",
        session.pk,
    )
    session.refresh_from_db()
    assert (session.state, session.meter_stop_wh, session.energy_wh) == (
        SessionState.COMPLETED,
        Decimal("5000.000"),
        Decimal("4000.000"),
    )
    assert session.stopped_at == stop.timestamp
    stop.refresh_from_db()
    assert stop.resolved


def test_an_unknown_stop_with_two_candidates_waits_for_an_operator(charger):
    open_session(charger, tx="1")
    Session.objects.create(
        charger=charger,
        connector_number=2,
        transaction_id="2",
        start_key="start-2",
        id_tag="TAG-1",
        started_at=T0,
        meter_start_wh=Decimal("0"),
    )
    stop = unknown_stop(charger)
    reconciliation.reconciliation_run(now=LATER)
    case = ReconciliationCase.objects.get(unmatched_stop=stop)
    assert case.state == "review"
    assert "More than one" in case.reason
    assert Session.objects.filter(state=SessionState.ACTIVE).count() == 2


# --- Operators ------------------------------------------------------------------------------------------


def test_an_operator_closes_a_session_with_a_reason_and_is_named_in_the_trail(charger):
    user = User.objects.create_user("olga")
    session = open_session(charger, status="Available", status_at=T0)
    [case] = reconciliation.reconciliation_detect(now=LATER)
    reconciliation.reconciliation_close(case=case, reason="Site visit: cable unplugged", user=user)
    case.refresh_from_db()
    assert (case.state, case.resolution, case.resolved_by) == ("resolved", "session_closed", user)
    last = case.entries.last()
    assert (last.step, last.actor, last.note) == (
        "session_closed",
        "olga",
        "Site visit: cable unplugged",
    )
    session.refresh_from_db()
    assert session.state == SessionState.COMPLETED
    with pytest.raises(reconciliation.CaseResolved):
        reconciliation.reconciliation_dismiss(case=case, reason="again", user=user)


def test_a_dismissed_case_leaves_the_session_open(charger):
    session = open_session(charger, status="Available", status_at=T0)
    [case] = reconciliation.reconciliation_detect(now=LATER)
    reconciliation.reconciliation_dismiss(case=case, reason="Known display fault", user=None)
    case.refresh_from_db()
    assert (case.state, case.resolution) == ("resolved", "dismissed")
    assert Session.objects.get(pk=session.pk).state == SessionState.ACTIVE
    # A dismissed doubt that persists is detected again as a new case.
    assert len(reconciliation.reconciliation_detect(now=LATER)) == 1


def test_a_case_for_an_operator_raises_an_alert_that_settling_it_clears(charger):
    from chargers.models import Alert

    open_session(charger, tx="1")
    Session.objects.create(
        charger=charger,
        connector_number=2,
        transaction_id="2",
        start_key="start-2",
        id_tag="TAG-1",
        started_at=T0,
        meter_start_wh=Decimal("0"),
    )
    stop = unknown_stop(charger)
    reconciliation.reconciliation_run(now=LATER)
    case = ReconciliationCase.objects.get(unmatched_stop=stop)
    alert = Alert.objects.get(charger=charger, kind="reconciliation")
    assert alert.state == "open"
    assert f"case {case.pk}" in alert.message
    reconciliation.reconciliation_dismiss(case=case, reason="Charger replaced", user=None)
    alert.refresh_from_db()
    assert alert.state == "resolved"
