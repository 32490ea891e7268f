"""Alert services: debounce, idempotence, re-opening, correlation, the lifecycle, MTTD and MTTR."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from chargers.alerts import (
    AlertNotActive,
    alert_acknowledge,
    alert_clear,
    alert_raise,
    alert_resolve,
    alerts_check,
)
from chargers.models import Alert, AlertCondition, Charger
from tests.chargers.conftest import T0

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(CPMS_ALERT_DEBOUNCE=60)
def test_a_held_condition_waits_for_its_debounce_then_raises_once(online, clock, heard):
    notified, _ = heard
    assert alert_raise(charger=online, kind="connector_faulted", connector_id=1) is None
    clock.advance(30)
    assert alert_raise(charger=online, kind="connector_faulted", connector_id=1) is None
    assert AlertCondition.objects.count() == 1
    assert not Alert.objects.exists()

    clock.advance(30)
    alert = alert_raise(charger=online, kind="connector_faulted", connector_id=1)
    assert alert is not None
    assert alert.state == "open"
    assert alert.fault_at == T0  # the condition began at the first report
    assert alert.raised_at == T0 + timedelta(seconds=60)
    assert alert.mttd_seconds == 60.0
    assert not AlertCondition.objects.exists()
    assert notified == [(alert.pk, "raised")]

    # Reported again: the same alert, counted, nobody told twice.
    clock.advance(5)
    again = alert_raise(charger=online, kind="connector_faulted", connector_id=1)
    assert again is not None and again.pk == alert.pk
    assert again.occurrences == 2
    assert Alert.objects.count() == 1
    assert notified == [(alert.pk, "raised")]


@override_settings(CPMS_ALERT_DEBOUNCE=60)
def test_a_flapping_condition_that_clears_inside_the_debounce_raises_nothing(online, clock, heard):
    notified, published = heard
    for _ in range(10):
        assert alert_raise(charger=online, kind="connector_faulted", connector_id=1) is None
        clock.advance(20)
        assert alert_clear(charger=online, kind="connector_faulted", connector_id=1) == 0
        clock.advance(20)
    assert not Alert.objects.exists()
    assert not AlertCondition.objects.exists()
    assert notified == [] and published == []


@override_settings(CPMS_ALERT_DEBOUNCE=60)
def test_the_periodic_check_raises_conditions_that_held(online, clock, heard):
    notified, _ = heard
    alert_raise(charger=online, kind="charger_error", connector_id=2, severity="warning")
    clock.advance(59)
    assert alerts_check().promoted == 0
    clock.advance(1)
    result = alerts_check()
    assert result.promoted == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.connector_id, alert.severity) == ("charger_error", 2, "warning")
    assert alert.mttd_seconds == 60.0
    assert notified == [(alert.pk, "raised")]


def test_an_occurrence_is_raised_at_once(online, clock):
    alert = alert_raise(
        charger=online,
        kind="meter_backwards",
        connector_id=1,
        fault_at=T0 - timedelta(seconds=3),
        details={"previous": "1000", "current": "900"},
    )
    assert alert is not None
    assert alert.mttd_seconds == 3.0
    assert alert.details == {"previous": "1000", "current": "900"}
    assert alert.organization_id == online.organization_id


def test_clearing_resolves_with_mttr_and_a_new_fault_after_the_window_is_a_new_alert(
    online, clock, heard
):
    notified, published = heard
    first = alert_raise(charger=online, kind="boot_loop")
    assert first is not None
    clock.advance(300)
    assert alert_clear(charger=online, kind="boot_loop") == 1
    first.refresh_from_db()
    assert first.state == "resolved"
    assert first.mttr_seconds == 300.0
    assert first.resolution == "cleared"
    assert alert_clear(charger=online, kind="boot_loop") == 0  # idempotent

    with override_settings(CPMS_ALERT_REOPEN_WINDOW=600):
        clock.advance(601)
        second = alert_raise(charger=online, kind="boot_loop")
    assert second is not None and second.pk != first.pk
    assert [e for _, e in notified] == ["raised", "resolved", "raised"]
    assert [kind for kind, _ in published] == ["alert.raised", "alert.resolved", "alert.raised"]


@override_settings(CPMS_ALERT_REOPEN_WINDOW=600)
def test_a_resolved_alert_that_comes_back_within_the_window_reopens(online, clock, heard):
    notified, published = heard
    alert = alert_raise(charger=online, kind="boot_loop")
    assert alert is not None
    clock.advance(100)
    alert_clear(charger=online, kind="boot_loop")
    clock.advance(599)
    again = alert_raise(charger=online, kind="boot_loop")
    assert again is not None and again.pk == alert.pk
    assert again.state == "open"
    assert again.reopen_count == 1
    assert again.resolved_at is None and again.mttr_seconds is None
    assert again.raised_at == T0  # time to repair counts from the first alert
    assert Alert.objects.count() == 1
    assert published[-1][0] == "alert.reopened"
    clock.advance(50)
    alert_clear(charger=online, kind="boot_loop")
    again.refresh_from_db()
    assert again.mttr_seconds == 749.0
    assert [e for _, e in notified] == ["raised", "resolved", "reopened", "resolved"]


@override_settings(CPMS_ALERT_OFFLINE_GRACE=120, CPMS_ALERT_DEBOUNCE=0)
def test_an_offline_charger_suppresses_its_connectors_alerts(online, clock, heard):
    notified, _ = heard
    Charger.objects.filter(pk=online.pk).update(connected=False)
    assert alert_raise(charger=online, kind="offline", severity="critical") is None

    # While the outage is being debounced, connector alerts are recorded, not notified.
    clock.advance(30)
    silent = alert_raise(charger=online, kind="silent_session", connector_id=1)
    faulted = alert_raise(charger=online, kind="connector_faulted", connector_id=2)
    assert silent is not None and silent.suppressed
    assert faulted is not None and faulted.suppressed

    clock.advance(90)
    assert alerts_check().promoted == 1
    offline = Alert.objects.get(kind="offline")
    assert offline.connector_id == 0 and not offline.suppressed
    assert offline.mttd_seconds == 120.0
    silent.refresh_from_db()
    faulted.refresh_from_db()
    assert silent.suppressed_by_id == offline.pk
    assert faulted.suppressed_by_id == offline.pk

    # Once the outage is an alert, new connector alerts point at it straight away.
    later = alert_raise(charger=online, kind="charger_error", connector_id=1)
    assert later is not None and later.suppressed and later.suppressed_by_id == offline.pk
    # A charger-level alert is not a connector's: it is not suppressed.
    boot = alert_raise(charger=online, kind="boot_loop")
    assert boot is not None and not boot.suppressed

    assert sorted(notified) == sorted([(offline.pk, "raised"), (boot.pk, "raised")])


@override_settings(CPMS_ALERT_OFFLINE_GRACE=120)
def test_a_charger_back_within_the_grace_period_raises_nothing(online, clock, heard):
    notified, _ = heard
    Charger.objects.filter(pk=online.pk).update(connected=False)
    alert_raise(charger=online, kind="offline", fault_at=T0)
    clock.advance(60)
    assert alert_clear(charger=online, kind="offline") == 0
    clock.advance(120)
    assert alerts_check().promoted == 0
    assert not Alert.objects.exists() and notified == []


@override_settings(CPMS_ALERT_OFFLINE_GRACE=120)
def test_a_lost_reconnect_event_is_caught_by_the_check(online, clock):
    Charger.objects.filter(pk=online.pk).update(connected=False)
    alert_raise(charger=online, kind="offline", fault_at=T0)
    Charger.objects.filter(pk=online.pk).update(connected=True, last_seen=T0 + timedelta(seconds=5))
    clock.advance(200)
    result = alerts_check()
    assert (result.promoted, result.discarded) == (0, 1)
    assert not Alert.objects.exists() and not AlertCondition.objects.exists()


@override_settings(CPMS_ALERT_OFFLINE_HEARTBEATS=2, CPMS_ALERT_OFFLINE_GRACE=120)
def test_a_connected_charger_silent_for_k_heartbeats_is_offline(online, clock):
    Charger.objects.filter(pk=online.pk).update(heartbeat_interval=60)
    clock.advance(119)
    assert alerts_check().offline == 0
    clock.advance(1)
    assert alerts_check().offline == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.fault_at) == ("offline", "critical", T0)
    assert alert.mttd_seconds == 120.0
    clock.advance(60)
    assert alerts_check().offline == 0  # one alert, not one per check
    assert Alert.objects.count() == 1


def test_acknowledge_then_resolve_by_hand(online, clock, django_user_model, heard):
    notified, _ = heard
    user = django_user_model.objects.create_user("ops", password="pw-123456789")
    alert = alert_raise(charger=online, kind="meter_backwards", connector_id=1)
    assert alert is not None
    clock.advance(10)
    alert = alert_acknowledge(alert=alert, user=user, note="on it")
    assert alert.state == "acknowledged"
    assert alert.acknowledged_by == user and alert.acknowledged_at == T0 + timedelta(seconds=10)
    with pytest.raises(AlertNotActive, match="acknowledged cannot become acknowledged"):
        alert_acknowledge(alert=alert, user=user)

    # Reported again while acknowledged: still the same, still acknowledged.
    same = alert_raise(charger=online, kind="meter_backwards", connector_id=1)
    assert same is not None and same.pk == alert.pk and same.state == "acknowledged"

    clock.advance(50)
    alert = alert_resolve(alert=alert, user=user, note="meter replaced")
    assert alert.state == "resolved"
    assert alert.resolved_by == user
    assert alert.resolution == "meter replaced"
    assert alert.mttr_seconds == 60.0
    with pytest.raises(AlertNotActive):
        alert_resolve(alert=alert, user=user)
    assert [e for _, e in notified] == ["raised", "acknowledged", "resolved"]


def test_alerts_are_kept_apart_per_charger_kind_and_connector(make_charger, clock):
    one = make_charger("CP-A")
    two = make_charger("CP-B")
    for charger in (one, two):
        Charger.objects.filter(pk=charger.pk).update(connected=True, last_seen=T0)
    alerts = {
        alert_raise(charger=one, kind="meter_backwards", connector_id=1),
        alert_raise(charger=one, kind="meter_backwards", connector_id=2),
        alert_raise(charger=one, kind="boot_loop"),
        alert_raise(charger=one, kind="boot_loop", connector_id=0),  # 0 is the charger too
        alert_raise(charger=two, kind="meter_backwards", connector_id=1),
    }
    assert len({a.pk for a in alerts if a is not None}) == 4
    assert alert_clear(charger=one, kind="meter_backwards", connector_id=1) == 1
    assert Alert.objects.filter(state="open").count() == 3
