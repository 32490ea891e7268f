"""A site's limit over time, in its own time zone, and charging-profile payloads; no database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from chargers import protocol
from smartcharging.limits import Event, Window, can_defer, price_at, site_limit_at
from smartcharging.profiles import (
    CHARGER_MAX,
    TX,
    TX_DEFAULT,
    ProfileRequest,
    composite_limit_a,
    get_composite_schedule,
    schedule_limit,
    set_charging_profile,
)

WEEKDAYS = frozenset({1, 2, 3, 4, 5})
EVENING = Window(WEEKDAYS, time(17), time(21), 40.0)
NIGHT = Window(frozenset(range(1, 8)), time(22), time(6), 63.0)
PARIS = "Europe/Paris"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_schedule_window_applies_in_the_sites_time_zone() -> None:
    # Monday 2026-11-23, 17:30 in Paris is 16:30 UTC.
    inside = site_limit_at(
        at("2026-11-23T16:30"), grid_a=63, windows=[EVENING], events=[], time_zone=PARIS
    )
    assert (inside.limit_a, inside.source) == (40.0, "schedule")
    assert inside.next_change == at("2026-11-23T20:00")
    before = site_limit_at(
        at("2026-11-23T15:30"), grid_a=63, windows=[EVENING], events=[], time_zone=PARIS
    )
    assert (before.limit_a, before.source) == (63, "grid")
    assert before.next_change == at("2026-11-23T16:00")
    saturday = site_limit_at(
        at("2026-11-28T16:30"), grid_a=63, windows=[EVENING], events=[], time_zone=PARIS
    )
    assert saturday.limit_a == 63


def test_a_window_past_midnight_holds_into_the_next_morning() -> None:
    low_night = Window(frozenset({7}), time(22), time(6), 20.0)  # Sunday night
    monday_early = site_limit_at(
        at("2026-11-23T04:00"), grid_a=63, windows=[low_night], events=[], time_zone="UTC"
    )
    assert monday_early.limit_a == 20.0
    monday_late = site_limit_at(
        at("2026-11-23T23:00"), grid_a=63, windows=[low_night], events=[], time_zone="UTC"
    )
    assert monday_late.limit_a == 63


def test_a_demand_response_event_caps_the_site_between_its_bounds() -> None:
    event = Event(at("2026-11-23T10:00"), at("2026-11-23T11:00"), 25.0)
    during = site_limit_at(
        at("2026-11-23T10:30"), grid_a=63, windows=[], events=[event], time_zone="UTC"
    )
    assert (during.limit_a, during.source, during.next_change) == (
        25.0,
        "event",
        at("2026-11-23T11:00"),
    )
    after = site_limit_at(
        at("2026-11-23T11:00"), grid_a=63, windows=[], events=[event], time_zone="UTC"
    )
    assert after.limit_a == 63 and after.next_change is None


def test_charging_waits_for_cheap_hours_only_when_they_deliver_in_time() -> None:
    windows = [(NIGHT, 0.10), (Window(frozenset(range(1, 8)), time(6), time(22), 1.0), 0.30)]
    now = at("2026-11-23T18:00")
    assert price_at(now, windows=windows, time_zone="UTC") == 0.30
    morning = at("2026-11-24T07:00")
    # 8 cheap hours at 11 kW: 88 kWh.
    assert can_defer(
        now,
        departure=morning,
        needed_wh=30_000,
        max_power_w=11_000,
        windows=windows,
        time_zone="UTC",
    )
    assert not can_defer(
        now,
        departure=morning,
        needed_wh=100_000,
        max_power_w=11_000,
        windows=windows,
        time_zone="UTC",
    )
    assert not can_defer(
        now,
        departure=now + timedelta(hours=2),
        needed_wh=1_000,
        max_power_w=11_000,
        windows=windows,
        time_zone="UTC",
    )


def test_profiles_are_valid_requests_in_both_versions() -> None:
    tx = ProfileRequest(TX, 2, 16.04, "A", 3, transaction_id="17")
    payload = set_charging_profile(tx, version="1.6")
    assert payload["csChargingProfiles"]["transactionId"] == 17
    assert payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.0, "numberPhases": 3}
    ]
    default = set_charging_profile(ProfileRequest(TX_DEFAULT, 0, 10, "W", 1), version="2.0.1")
    assert default["evseId"] == 0
    assert default["chargingProfile"]["chargingProfilePurpose"] == "TxDefaultProfile"
    maximum = set_charging_profile(ProfileRequest(CHARGER_MAX, 0, 32, "A", 3), version="2.0.1")
    assert maximum["chargingProfile"]["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert (
        set_charging_profile(ProfileRequest(CHARGER_MAX, 0, 32, "A", 3), version="1.6")[
            "csChargingProfiles"
        ]["chargingProfilePurpose"]
        == "ChargePointMaxProfile"
    )


def test_a_composite_schedule_in_watts_reads_back_in_amperes() -> None:
    answer = {
        "status": "Accepted",
        "schedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900.0}],
        },
    }
    assert composite_limit_a(answer, voltage=230, phases=3) == 10.0
    assert composite_limit_a({"status": "Rejected"}, voltage=230, phases=3) is None


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
@pytest.mark.parametrize("purpose", [TX, TX_DEFAULT, CHARGER_MAX])
@pytest.mark.parametrize("unit", ["A", "W"])
def test_every_profile_passes_the_versions_schema(version: str, purpose: str, unit: str) -> None:
    request = ProfileRequest(
        purpose, 1 if purpose == TX else 0, 11.5, unit, 3, "5" if purpose == TX else None
    )
    payload = set_charging_profile(request, version=version)
    protocol.validate(protocol.CALL, "SetChargingProfile", payload, version, "-")
    composite = get_composite_schedule(1, version=version)
    protocol.validate(protocol.CALL, "GetCompositeSchedule", composite, version, "-")


def test_schedule_limits_are_tenths_the_schema_accepts() -> None:
    for tenths in range(700):
        value = tenths / 10 + 0.05
        limit = schedule_limit(value)
        assert limit <= value
        assert value - limit < 1.0
        protocol.validate(
            protocol.CALL,
            "SetChargingProfile",
            set_charging_profile(ProfileRequest(TX_DEFAULT, 0, limit, "A", 3), version="1.6"),
            "1.6",
            "-",
        )
    assert schedule_limit(6.3) == 6.2
    assert schedule_limit(21.04) == 21.0
