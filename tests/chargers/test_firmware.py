"""Firmware campaigns without the database: state machines, statuses, requests, waves and the
halt decision."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargers.firmware import (
    CampaignState,
    CampaignView,
    FirmwareRequest,
    IllegalCampaignMove,
    Step,
    TargetState,
    TargetView,
    campaign_transition,
    counts,
    decide,
    failure_tally,
    firmware_command,
    plan_waves,
    target_state_for_answer,
    target_state_for_status,
)
from chargers.protocol import CALL, FrameError, validate

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- State machines ------------------------------------------------------------------------------


def test_a_draft_starts_and_a_running_campaign_halts_pauses_resumes_and_ends():
    assert campaign_transition("draft", "running") == CampaignState.RUNNING
    assert campaign_transition("running", "halted") == CampaignState.HALTED
    assert campaign_transition("halted", "running") == CampaignState.RUNNING
    assert campaign_transition("running", "paused") == CampaignState.PAUSED
    assert campaign_transition("paused", "cancelled") == CampaignState.CANCELLED
    assert campaign_transition("running", "completed") == CampaignState.COMPLETED


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("draft", "paused"),
        ("draft", "completed"),
        ("running", "running"),
        ("completed", "running"),
        ("cancelled", "running"),
        ("completed", "cancelled"),
        ("paused", "halted"),
    ],
)
def test_the_campaign_machine_refuses_moves_it_does_not_have(current, target):
    with pytest.raises(IllegalCampaignMove, match=f"a campaign that is {current} cannot become"):
        campaign_transition(current, target)


@pytest.mark.parametrize(
    ("current", "status", "goal"),
    [
        ("sent", "Downloading", TargetState.IN_PROGRESS),
        ("sent", "DownloadScheduled", TargetState.IN_PROGRESS),
        ("in_progress", "Installing", None),  # already in progress
        ("in_progress", "SignatureVerified", None),
        ("in_progress", "Installed", TargetState.SUCCEEDED),
        ("sent", "Installed", TargetState.SUCCEEDED),
        ("in_progress", "DownloadFailed", TargetState.FAILED),
        ("in_progress", "InstallationFailed", TargetState.FAILED),
        ("in_progress", "InstallVerificationFailed", TargetState.FAILED),
        ("in_progress", "InvalidSignature", TargetState.FAILED),
        ("sent", "Idle", None),  # says nothing about this update
        ("succeeded", "DownloadFailed", None),  # finished targets stay finished
        ("failed", "Installed", None),
        ("pending", "Downloading", None),  # never sent: not ours
    ],
)
def test_what_a_firmware_status_means_for_a_target(current, status, goal):
    assert target_state_for_status(current, status) == goal


def test_a_refused_or_undelivered_request_fails_its_target():
    for state in ("rejected", "error", "timeout", "failed"):
        assert target_state_for_answer(state, "") == TargetState.FAILED
    for state in ("accepted", "answered", "sent", "queued", "requested"):
        assert target_state_for_answer(state, "Accepted") is None


# --- Requests ------------------------------------------------------------------------------------


def test_a_16_charger_gets_update_firmware_and_valid_payloads_for_every_version():
    plain = FirmwareRequest(location="https://fw.example.com/2.bin", retrieve_at=WHEN, retries=3)
    assert firmware_command("1.6", plain, 7) == (
        "UpdateFirmware",
        {
            "location": "https://fw.example.com/2.bin",
            "retrieveDate": "2030-01-02T03:04:05Z",
            "retries": 3,
        },
    )
    action, payload = firmware_command("2.0.1", plain, 7)
    assert action == "UpdateFirmware"
    assert payload == {
        "requestId": 7,
        "firmware": {
            "location": "https://fw.example.com/2.bin",
            "retrieveDateTime": "2030-01-02T03:04:05Z",
        },
        "retries": 3,
    }
    for version in ("1.6", "2.0.1", "2.1"):
        action, payload = firmware_command(version, plain, 7)
        validate(CALL, action, payload, version, "-")


def test_a_signed_campaign_uses_signed_update_firmware_on_16_and_the_signature_on_2x():
    signed = FirmwareRequest(
        location="https://fw.example.com/2.bin",
        retrieve_at=WHEN,
        install_at=WHEN,
        retry_interval=60,
        signature="c2lnbmF0dXJl",
        signing_certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    )
    action, payload = firmware_command("1.6", signed, 9)
    assert action == "SignedUpdateFirmware"
    assert payload["requestId"] == 9
    assert payload["retryInterval"] == 60
    assert payload["firmware"]["signature"] == "c2lnbmF0dXJl"
    assert payload["firmware"]["installDateTime"] == "2030-01-02T03:04:05Z"
    validate(CALL, action, payload, "1.6", "-")
    action, payload = firmware_command("2.0.1", signed, 9)
    assert action == "UpdateFirmware"
    assert payload["firmware"]["signingCertificate"].startswith("-----BEGIN")
    validate(CALL, action, payload, "2.0.1", "-")


def test_a_location_too_long_for_2x_breaks_its_schema():
    long = FirmwareRequest(location="https://fw.example.com/" + "a" * 600, retrieve_at=WHEN)
    action, payload = firmware_command("2.0.1", long, 1)
    with pytest.raises(FrameError):
        validate(CALL, action, payload, "2.0.1", "-")


# --- Waves and decisions ---------------------------------------------------------------------------


def test_waves_start_with_the_canary():
    assert plan_waves(7, canary=2, wave_size=3) == [0, 0, 1, 1, 1, 2, 2]
    assert plan_waves(1, canary=5, wave_size=3) == [0]
    assert plan_waves(0, canary=1, wave_size=1) == []


@given(
    count=st.integers(min_value=0, max_value=500),
    canary=st.integers(min_value=0, max_value=50),
    wave_size=st.integers(min_value=0, max_value=50),
)
def test_every_target_is_in_exactly_one_wave_and_no_wave_is_too_big(count, canary, wave_size):
    waves = plan_waves(count, canary=canary, wave_size=wave_size)
    assert len(waves) == count
    assert waves == sorted(waves)
    if count:
        assert waves.count(0) == max(1, min(canary, count))
        sizes = [waves.count(w) for w in range(1, max(waves) + 1)]
        assert all(1 <= size <= max(1, wave_size) for size in sizes)
        assert set(waves) == set(range(max(waves) + 1))  # no empty wave in between


def view(
    states: list[tuple[int, str]],
    *,
    state: str = "running",
    current: int = 0,
    ratio: str = "0.2",
    baseline: int = 0,
) -> CampaignView:
    return CampaignView(
        state=state,
        current_wave=current,
        max_failure_ratio=Decimal(ratio),
        halt_baseline_wave=baseline,
        targets=tuple(TargetView(wave=w, state=s) for w, s in states),
    )


def test_the_next_wave_waits_for_the_current_one():
    assert decide(view([(0, "in_progress"), (1, "pending")])).step == Step.WAIT
    assert decide(view([(0, "succeeded"), (1, "pending")])).wave == 1
    assert decide(view([(0, "succeeded"), (1, "pending"), (2, "pending")])).step == Step.SEND_WAVE
    assert decide(view([(0, "succeeded"), (1, "succeeded")], current=1)).step == Step.COMPLETE


def test_a_failed_canary_halts_and_says_why():
    decision = decide(view([(0, "failed"), (1, "pending")]))
    assert decision.step == Step.HALT
    assert decision.reason == "1 of 1 targets failed (100%), above the allowed 20%"


def test_failures_at_the_ratio_do_not_halt_but_past_it_do():
    at = [(0, "failed"), (0, "succeeded"), (1, "pending")]
    assert decide(view(at, ratio="0.5")).step == Step.SEND_WAVE
    past = [(0, "failed"), (0, "timed_out"), (0, "succeeded"), (1, "pending")]
    assert decide(view(past, ratio="0.5")).step == Step.HALT


def test_the_halt_counts_only_targets_sent_and_not_skipped():
    targets = [
        (0, "succeeded"),
        (0, "skipped"),
        (0, "skipped"),
        (1, "failed"),
        (1, "succeeded"),
        (2, "pending"),
    ]
    assert failure_tally([TargetView(w, s) for w, s in targets], from_wave=0, up_to_wave=1) == (
        failure_tally(
            [TargetView(0, "succeeded"), TargetView(1, "failed"), TargetView(1, "succeeded")],
            from_wave=0,
            up_to_wave=1,
        )
    )
    assert decide(view(targets, current=1, ratio="0.4")).step == Step.SEND_WAVE


def test_after_a_resume_earlier_failures_are_accepted():
    targets = [(0, "failed"), (1, "pending")]
    assert decide(view(targets, baseline=1)).step == Step.SEND_WAVE


def test_a_campaign_that_is_not_running_sends_nothing():
    for state in ("draft", "paused", "halted", "completed", "cancelled"):
        assert decide(view([(0, "succeeded"), (1, "pending")], state=state)).step == Step.WAIT


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.sampled_from([s.value for s in TargetState]),
        ),
        max_size=40,
    ),
    st.integers(min_value=-1, max_value=4),
    st.decimals(min_value=0, max_value=1, places=2),
)
def test_a_campaign_never_sends_a_wave_while_one_is_under_way_or_failures_are_past_the_ratio(
    targets, current, ratio
):
    campaign = view(targets, current=current, ratio=str(ratio))
    decision = decide(campaign)
    if decision.step == Step.SEND_WAVE:
        assert decision.wave > current
        sent = [s for w, s in targets if w <= current]
        assert all(s in ("succeeded", "failed", "timed_out", "skipped") for s in sent)
        tally = failure_tally(campaign.targets, from_wave=0, up_to_wave=current)
        assert tally.ratio <= ratio
        assert not any(w < decision.wave and s == "pending" and w > current for w, s in targets)


def test_counts_name_every_state():
    assert counts(["sent", "sent", "failed"]) == {
        "pending": 0,
        "sent": 2,
        "in_progress": 0,
        "succeeded": 0,
        "failed": 1,
        "timed_out": 0,
        "skipped": 0,
    }
