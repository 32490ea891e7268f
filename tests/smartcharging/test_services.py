"""Load management services on the database: rebalancing and dispatch, thresholds, demand-response
events, fail-safe defaults, rejected profiles, verification and compliance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from chargers.alert_rules import ACTIVE
from chargers.commands import CommandState
from chargers.models import Alert, Charger, Command, Connector, Session, Site
from cpms.celery import app as celery_app
from smartcharging import services
from smartcharging.models import (
    ChargerLoad,
    Circuit,
    LimitEvent,
    LoadSnapshot,
    ProfileViolation,
    SessionLimit,
    SiteCapacity,
)
from tests.chargers.test_services import start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_tasks() -> Iterator[None]:
    """Tasks enqueued by the services run in-process, as on the embedded default."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def capacity(site: Site) -> SiteCapacity:
    return SiteCapacity.objects.create(site=site, limit=Decimal("63"))


def online(make_charger: Any, identity: str, version: str = "1.6", connectors: int = 2) -> Charger:
    charger = make_charger(identity, connected=True, ocpp_version=version)
    for number in range(1, connectors + 1):
        Connector.objects.create(charger=charger, connector_id=number, evse_id=number)
    return charger


def session_on(charger: Charger, connector: int = 1) -> Session:
    result = start(charger, connector_id=connector, meter_start=1000 + connector)
    return Session.objects.get(charger=charger, transaction_id=str(result.transaction_id))


def tx_commands(charger: Charger) -> list[Command]:
    return [
        c
        for c in Command.objects.filter(charger=charger, action="SetChargingProfile").order_by("pk")
        if c.payload["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
    ]


def limit_of(command: Command) -> float:
    return float(
        command.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
            "limit"
        ]
    )


def answer(command: Command, state: CommandState) -> None:
    Command.objects.filter(pk=command.pk).update(state=state)
    services.profile_command_answered(command_pk=command.pk)


def test_sessions_share_the_site_and_each_gets_a_tx_profile(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    chargers = [online(make_charger, f"CP-{n}") for n in range(3)]
    sessions = [session_on(c) for c in chargers]
    result = services.site_rebalance(site_pk=capacity.site_id)
    assert result.limit_a == 63
    assert {key: round(a.limit_a, 2) for key, a in result.allocations.items()} == {
        s.pk: 21.0 for s in sessions
    }
    for charger, session in zip(chargers, sessions, strict=True):
        (command,) = tx_commands(charger)
        profile = command.payload["csChargingProfiles"]
        assert command.system == "smartcharging"
        assert profile["transactionId"] == int(session.transaction_id)
        assert command.payload["connectorId"] == 1
        assert limit_of(command) == 21.0
        # Unrefreshed, it falls back to the charger's safe share: 63 A over 6 connectors.
        assert profile["chargingSchedule"]["chargingSchedulePeriod"][1] == {
            "startPeriod": 900,
            "limit": 10.5,
            "numberPhases": 3,
        }
    rows = SessionLimit.objects.filter(session__in=sessions)
    assert sorted(float(r.commanded_a or 0) for r in rows) == [21.0, 21.0, 21.0]
    snapshot = LoadSnapshot.objects.get(site=capacity.site)
    assert snapshot.allocated_a == [63.0, 63.0, 63.0]
    assert snapshot.sessions == 3


def test_limits_are_resent_only_when_they_move_past_the_threshold(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_THRESHOLD_A = 2.0
    settings.CPMS_SMART_CHARGING_MIN_INTERVAL = 0
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_on(a)
    session_b = session_on(b)
    services.site_rebalance(site_pk=capacity.site_id)
    assert len(tx_commands(a)) == 1
    # Nothing moved: nothing is sent again.
    assert services.site_rebalance(site_pk=capacity.site_id).sent == []
    # 31.5 -> 32.0 on raising the site to 64 A is within the threshold.
    SiteCapacity.objects.filter(pk=capacity.pk).update(limit=Decimal("64"))
    result = services.site_rebalance(site_pk=capacity.site_id)
    assert result.sent == [] and result.deferred == 2
    # A lower limit always goes out, however small the step.
    SiteCapacity.objects.filter(pk=capacity.pk).update(limit=Decimal("62"))
    result = services.site_rebalance(site_pk=capacity.site_id)
    assert len(result.sent) == 2
    assert [limit_of(c) for c in tx_commands(a)] == [31.5, 31.0]
    assert float(SessionLimit.objects.get(session=session_b).commanded_a or 0) == 31.0


def test_a_raise_waits_for_the_rate_limit(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_MIN_INTERVAL = 60
    settings.CPMS_SMART_CHARGING_THRESHOLD_A = 0.2
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_on(a)
    session_b = session_on(b)
    now = timezone.now()
    services.site_rebalance(site_pk=capacity.site_id, now=now)
    Session.objects.filter(pk=session_b.pk).update(state="Completed")
    assert (
        services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(seconds=5)).sent == []
    )
    later = services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(seconds=61))
    assert len(later.sent) == 1
    assert limit_of(tx_commands(a)[-1]) == 32.0


def test_a_demand_response_event_lowers_every_session_and_its_end_lifts_them(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_MIN_INTERVAL = 0
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_on(a), session_on(b)
    now = timezone.now()
    services.site_rebalance(site_pk=capacity.site_id, now=now)
    event = LimitEvent.objects.create(
        site=capacity.site,
        starts_at=now + timedelta(minutes=1),
        ends_at=now + timedelta(minutes=31),
        limit_a=Decimal("20"),
    )
    during = services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(minutes=2))
    assert {round(x.limit_a, 2) for x in during.allocations.values()} == {10.0}
    assert [limit_of(c) for c in tx_commands(a)] == [31.5, 10.0]
    services.limit_event_cancel(event=event, now=now + timedelta(minutes=3))
    after = services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(minutes=4))
    assert {round(x.limit_a, 2) for x in after.allocations.values()} == {31.5}


def test_circuits_and_phase_rotation_are_respected(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    garage = Circuit.objects.create(site=capacity.site, name="Garage", limit_a=Decimal("16"))
    one, two = online(make_charger, "CP-1P"), online(make_charger, "CP-3P")
    ChargerLoad.objects.create(charger=one, circuit=garage, phase_rotation="L2")
    ChargerLoad.objects.create(charger=two, circuit=garage, phase_rotation="L3L1L2")
    s1, s2 = session_on(one), session_on(two)
    result = services.site_rebalance(site_pk=capacity.site_id)
    # Both draw on L2 under a 16 A circuit.
    assert round(result.allocations[s1.pk].limit_a, 2) == 8.0
    assert round(result.allocations[s2.pk].limit_a, 2) == 8.0
    assert (
        tx_commands(one)[0].payload["csChargingProfiles"]["chargingSchedule"][
            "chargingSchedulePeriod"
        ][0]["numberPhases"]
        == 1
    )


def test_a_charger_in_watts_on_a_kilowatt_site_gets_watts(
    make_charger: Any, site: Site, id_token: Any
) -> None:
    capacity = SiteCapacity.objects.create(site=site, limit=Decimal("22.08"), limit_unit="kW")
    charger = online(make_charger, "CP-W")
    ChargerLoad.objects.create(charger=charger, rate_unit="W")
    session_on(charger)
    services.site_rebalance(site_pk=capacity.site_id)
    (command,) = tx_commands(charger)
    schedule = command.payload["csChargingProfiles"]["chargingSchedule"]
    # 22.08 kW over 3 x 230 V is 32 A, the charger's maximum: 22080 W.
    assert schedule["chargingRateUnit"] == "W"
    assert limit_of(command) == pytest.approx(22080.0)


def test_an_unmanaged_site_is_left_alone(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    SiteCapacity.objects.filter(pk=capacity.pk).update(managed=False)
    charger = online(make_charger, "CP-X")
    session_on(charger)
    assert services.site_rebalance(site_pk=capacity.site_id).sent == []
    assert tx_commands(charger) == []


def test_a_rejected_profile_marks_the_charger_which_is_then_counted_at_its_maximum(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    SiteCapacity.objects.filter(pk=capacity.pk).update(limit=Decimal("40"))
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_on(a)
    session_b = session_on(b)
    services.site_rebalance(site_pk=capacity.site_id)
    answer(tx_commands(a)[0], CommandState.REJECTED)
    load = ChargerLoad.objects.get(charger=a)
    assert load.profile_rejected_at is not None
    assert "TxProfile rejected" in load.profile_rejected_reason
    alert = Alert.objects.get(charger=a, kind=Alert.Kind.PROFILE_REJECTED)
    assert alert.state in ACTIVE
    # The rebalance that followed left B only what A may draw at most leaves.
    assert float(SessionLimit.objects.get(session=session_b).commanded_a or 0) == 8.0
    # An accepted profile later clears the mark.
    answer(tx_commands(b)[-1], CommandState.ACCEPTED)
    load.refresh_from_db()
    assert load.profile_rejected_at is not None  # B's answer says nothing about A
    services.charger_failsafe_send(charger=a, force=True)
    default = Command.objects.filter(charger=a).order_by("-pk")[1]
    answer(default, CommandState.ACCEPTED)
    load.refresh_from_db()
    assert load.profile_rejected_at is None
    assert not Alert.objects.filter(
        charger=a, kind=Alert.Kind.PROFILE_REJECTED, state__in=ACTIVE
    ).exists()


def test_an_accepted_tx_profile_is_verified_with_the_composite_schedule(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    charger = online(make_charger, "CP-V")
    session = session_on(charger)
    services.site_rebalance(site_pk=capacity.site_id)
    answer(tx_commands(charger)[0], CommandState.ACCEPTED)
    assert SessionLimit.objects.get(session=session).accepted is True
    ask = Command.objects.get(charger=charger, action="GetCompositeSchedule")
    assert ask.payload == {"connectorId": 1, "duration": 300, "chargingRateUnit": "A"}
    Command.objects.filter(pk=ask.pk).update(
        state=CommandState.ACCEPTED,
        response={
            "status": "Accepted",
            "connectorId": 1,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}],
            },
        },
    )
    services.profile_command_answered(command_pk=ask.pk)
    assert float(SessionLimit.objects.get(session=session).verified_a or 0) == 32.0


def test_failsafe_profiles_give_each_outlet_a_safe_share(
    make_charger: Any, capacity: SiteCapacity
) -> None:
    chargers = [online(make_charger, f"CP-{n}") for n in range(5)]
    sent = services.charger_failsafe_send(charger=chargers[0])
    default, maximum = sent
    profile = default.payload["csChargingProfiles"]
    assert default.payload["connectorId"] == 0
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    # While the central system runs, new sessions wait at 0 A for their own limit; after the
    # fallback time with no refresh, 63 A between 10 connectors: 6.3 A, sent as the next tenth
    # the 1.6 schema accepts.
    assert profile["chargingProfileKind"] == "Absolute"
    assert [
        (p["startPeriod"], p["limit"])
        for p in profile["chargingSchedule"]["chargingSchedulePeriod"]
    ] == [(0, 0.0), (900, 6.2)]
    assert maximum.payload["csChargingProfiles"]["chargingProfilePurpose"] == (
        "ChargePointMaxProfile"
    )
    # Unchanged and accepted: not sent again.
    answer(default, CommandState.ACCEPTED)
    assert services.charger_failsafe_send(charger=chargers[0]) == []
    # One more charger: 63 / 12 = 5.25 A, below the 6 A minimum: the default pauses.
    online(make_charger, "CP-NEW")
    (again, _) = services.charger_failsafe_send(charger=chargers[0])
    assert (
        again.payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
            "limit"
        ]
        == 0
    )


def test_lending_and_compliance_follow_the_measurements(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_MIN_INTERVAL = 0
    settings.CPMS_SMART_CHARGING_COMPLIANCE_DELAY = 30
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_a, session_b = session_on(a), session_on(b)
    now = timezone.now()
    services.site_rebalance(site_pk=capacity.site_id, now=now)
    # Right after its limit was sent, a low reading says nothing yet: A may still be ramping up.
    early = services.session_measured(session_pk=session_a.pk, measured_a=10.0, now=now)
    assert not early.changed_picture
    # Once it had time to follow it, A's EV takes only 10 A of its 31.5: B gets the rest.
    later = now + timedelta(seconds=31)
    measured = services.session_measured(session_pk=session_a.pk, measured_a=10.0, now=later)
    assert measured.changed_picture and measured.violation is None
    result = services.site_rebalance(site_pk=capacity.site_id, now=later)
    assert round(result.allocations[session_a.pk].limit_a, 2) == 12.0
    assert round(result.allocations[session_b.pk].limit_a, 2) == 32.0
    # B draws 40 A against 32: within the delay nothing is recorded, after it a violation is.
    early = services.session_measured(
        session_pk=session_b.pk, measured_a=40.0, now=now + timedelta(seconds=5)
    )
    assert early.violation is None
    late = services.session_measured(
        session_pk=session_b.pk, measured_a=40.0, now=now + timedelta(seconds=40)
    )
    assert late.violation is not None
    ignored = Alert.objects.get(charger=b, kind=Alert.Kind.PROFILE_IGNORED, state__in=ACTIVE)
    assert ignored.connector_id == 1
    # 31.5 to 32 A is within the threshold: B still runs on the 31.5 A it was sent.
    assert float(late.violation.commanded_a) == 31.5
    assert float(late.violation.measured_a) == 40.0
    # Back under the limit plus tolerance: the violation is resolved.
    services.session_measured(
        session_pk=session_b.pk, measured_a=33.0, now=now + timedelta(seconds=50)
    )
    assert not ProfileViolation.objects.filter(resolved_at__isnull=True).exists()
    assert not Alert.objects.filter(kind=Alert.Kind.PROFILE_IGNORED, state__in=ACTIVE).exists()


def test_a_deadline_from_the_ev_gets_what_it_needs(
    make_charger: Any, capacity: SiteCapacity, id_token: Any
) -> None:
    from chargers.models import EVChargingNeeds

    SiteCapacity.objects.filter(pk=capacity.pk).update(limit=Decimal("40"))
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    session_a, session_b = session_on(a), session_on(b)
    now = timezone.now()
    # 38.64 kWh in two hours over 3 x 230 V is 28 A.
    EVChargingNeeds.objects.create(
        charger=a,
        session=session_a,
        evse_id=1,
        requested_energy_transfer="AC_three_phase",
        departure_time=now + timedelta(hours=2),
        energy_amount_wh=Decimal("38640"),
        response_status="Accepted",
    )
    result = services.site_rebalance(site_pk=capacity.site_id, now=now)
    assert result.allocations[session_a.pk].limit_a == pytest.approx(28.0, abs=0.01)
    assert result.allocations[session_b.pk].limit_a == pytest.approx(12.0, abs=0.01)


def test_session_events_trigger_the_balancer(
    make_charger: Any,
    capacity: SiteCapacity,
    id_token: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    a, b = online(make_charger, "CP-A"), online(make_charger, "CP-B")
    with django_capture_on_commit_callbacks(execute=True):
        session_on(a)
    assert [limit_of(c) for c in tx_commands(a)] == [32.0]
    with django_capture_on_commit_callbacks(execute=True):
        session_on(b)
    assert [limit_of(c) for c in tx_commands(a)] == [32.0, 31.5]


def test_raises_wait_until_the_lowered_limits_are_answered(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_MIN_INTERVAL = 0
    a, b, c = (online(make_charger, f"CP-{x}") for x in "ABC")
    session_on(a), session_on(b)
    services.site_rebalance(site_pk=capacity.site_id)
    for charger in (a, b):
        answer(tx_commands(charger)[0], CommandState.ACCEPTED)
    # A third car: A and B go down to 21 A first; C's first limit waits for their answers.
    session_c = session_on(c)
    result = services.site_rebalance(site_pk=capacity.site_id)
    assert (len(result.sent), result.held) == (2, 1)
    assert tx_commands(c) == []
    answer(tx_commands(a)[-1], CommandState.ACCEPTED)
    assert tx_commands(c) == []
    # The last lowered limit answered: the held raise goes out.
    answer(tx_commands(b)[-1], CommandState.ACCEPTED)
    assert [limit_of(command) for command in tx_commands(c)] == [21.0]
    assert float(SessionLimit.objects.get(session=session_c).commanded_a or 0) == 21.0


def test_limits_are_refreshed_before_their_fallback_time(
    make_charger: Any, capacity: SiteCapacity, id_token: Any, settings: Any
) -> None:
    settings.CPMS_SMART_CHARGING_FAILSAFE_AFTER = 600
    charger = online(make_charger, "CP-R")
    session_on(charger)
    now = timezone.now()
    services.site_rebalance(site_pk=capacity.site_id, now=now)
    assert (
        services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(seconds=200)).sent
        == []
    )
    refreshed = services.site_rebalance(site_pk=capacity.site_id, now=now + timedelta(seconds=301))
    assert len(refreshed.sent) == 1
