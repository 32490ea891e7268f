"""Firmware campaigns, sans I/O: the campaign's and each target's state machines, what a
FirmwareStatusNotification means for a target, the request each OCPP version takes, and when a
campaign sends its next wave, halts or completes.

Nothing here touches the database; ``chargers.firmware_services`` loads a campaign into these
dataclasses, asks what to do and writes the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class CampaignState(StrEnum):
    DRAFT = "draft"  # being prepared: targets not resolved, nothing sent
    RUNNING = "running"  # waves are sent as the previous ones finish
    PAUSED = "paused"  # an operator paused it: nothing new is sent
    HALTED = "halted"  # failures passed the campaign's ratio: nothing new is sent
    COMPLETED = "completed"  # every wave was sent and every target finished
    CANCELLED = "cancelled"  # stopped for good; targets not yet sent never will be


class IllegalCampaignMove(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"a campaign that is {current} cannot become {target}")
        self.current = current
        self.target = target


_CAMPAIGN_MOVES: dict[CampaignState, frozenset[CampaignState]] = {
    CampaignState.DRAFT: frozenset({CampaignState.RUNNING, CampaignState.CANCELLED}),
    CampaignState.RUNNING: frozenset(
        {
            CampaignState.PAUSED,
            CampaignState.HALTED,
            CampaignState.COMPLETED,
            CampaignState.CANCELLED,
        }
    ),
    CampaignState.PAUSED: frozenset(
        {CampaignState.RUNNING, CampaignState.CANCELLED, CampaignState.COMPLETED}
    ),
    CampaignState.HALTED: frozenset(
        {CampaignState.RUNNING, CampaignState.CANCELLED, CampaignState.COMPLETED}
    ),
    CampaignState.COMPLETED: frozenset(),
    CampaignState.CANCELLED: frozenset(),
}

# A campaign in these states still has targets whose updates are followed.
LIVE_CAMPAIGN_STATES = frozenset(
    {CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.HALTED}
)


# A cancelled campaign sends nothing more, but what its targets under way report is still kept.
REPORTING_CAMPAIGN_STATES = LIVE_CAMPAIGN_STATES | {CampaignState.CANCELLED}


def campaign_transition(current: str, target: str) -> CampaignState:
    """The campaign's state after moving from ``current`` to ``target``; refuses every move the
    machine does not have (including staying put)."""
    source, goal = CampaignState(current), CampaignState(target)
    if goal not in _CAMPAIGN_MOVES[source]:
        raise IllegalCampaignMove(source, goal)
    return goal


class TargetState(StrEnum):
    PENDING = "pending"  # its wave has not been sent yet
    SENT = "sent"  # the update request is on its way (or queued for an offline charger)
    IN_PROGRESS = "in_progress"  # the charger reports downloading, installing, ...
    SUCCEEDED = "succeeded"  # Installed, or booted with the new firmware version
    FAILED = "failed"  # the charger refused or reported a failure, or the request failed
    TIMED_OUT = "timed_out"  # no outcome within the campaign's per-target timeout
    SKIPPED = "skipped"  # never sent: offline (and not queued), never connected, cancelled


ACTIVE_TARGET_STATES = frozenset({TargetState.SENT, TargetState.IN_PROGRESS})
FINISHED_TARGET_STATES = frozenset(
    {TargetState.SUCCEEDED, TargetState.FAILED, TargetState.TIMED_OUT, TargetState.SKIPPED}
)
# The outcomes that count against the campaign's failure ratio.
FAILED_TARGET_STATES = frozenset({TargetState.FAILED, TargetState.TIMED_OUT})

_TARGET_MOVES: dict[TargetState, frozenset[TargetState]] = {
    TargetState.PENDING: frozenset({TargetState.SENT, TargetState.SKIPPED}),
    TargetState.SENT: frozenset(
        {
            TargetState.IN_PROGRESS,
            TargetState.SUCCEEDED,
            TargetState.FAILED,
            TargetState.TIMED_OUT,
            TargetState.SKIPPED,
        }
    ),
    TargetState.IN_PROGRESS: frozenset(
        {TargetState.SUCCEEDED, TargetState.FAILED, TargetState.TIMED_OUT}
    ),
    **{state: frozenset() for state in FINISHED_TARGET_STATES},
}


def target_can_move(current: str, target: str) -> bool:
    return TargetState(target) in _TARGET_MOVES[TargetState(current)]


# --- What a charger reports --------------------------------------------------------------------

# FirmwareStatusNotification statuses (1.6, 1.6 security extension, 2.0.1, 2.1).
SUCCESS_STATUSES = frozenset({"Installed"})
FAILURE_STATUSES = frozenset(
    {
        "DownloadFailed",
        "InstallationFailed",
        "InstallVerificationFailed",
        "InvalidSignature",
        "InvalidCertificate",
        "RevokedCertificate",
    }
)
PROGRESS_STATUSES = frozenset(
    {
        "Downloading",
        "Downloaded",
        "DownloadScheduled",
        "DownloadPaused",
        "Installing",
        "InstallRebooting",
        "InstallScheduled",
        "SignatureVerified",
    }
)


def target_state_for_status(current: str, status: str) -> TargetState | None:
    """The state a FirmwareStatusNotification puts an active target in; None when it changes
    nothing (``Idle`` and statuses a target that finished no longer heeds)."""
    state = TargetState(current)
    if status in SUCCESS_STATUSES:
        goal = TargetState.SUCCEEDED
    elif status in FAILURE_STATUSES:
        goal = TargetState.FAILED
    elif status in PROGRESS_STATUSES:
        goal = TargetState.IN_PROGRESS
    else:
        return None
    if goal == state or not target_can_move(state, goal):
        return None
    return goal


def target_state_for_answer(command_state: str, response_status: str) -> TargetState | None:
    """What the charger's answer to the update request means for its target: a refusal, an
    error or a request that could not be delivered fails it; None while it is on its way or once
    the charger took it (its notifications tell the rest)."""
    if command_state in ("rejected", "error", "timeout", "failed"):
        return TargetState.FAILED
    return None


# --- The request ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    """What a campaign asks each charger to install."""

    location: str
    retrieve_at: datetime
    install_at: datetime | None = None
    retries: int | None = None
    retry_interval: int | None = None
    signature: str = ""
    signing_certificate: str = ""

    @property
    def signed(self) -> bool:
        return bool(self.signature or self.signing_certificate)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def firmware_command(
    version: str, request: FirmwareRequest, request_id: int
) -> tuple[str, dict[str, Any]]:
    """The action and payload that ask a charger of OCPP ``version`` for the update.

    1.6 takes UpdateFirmware, or the security extension's SignedUpdateFirmware when the campaign
    is signed; 2.x takes UpdateFirmware with the signature in its firmware.
    """
    extras: dict[str, Any] = {}
    if request.retries is not None:
        extras["retries"] = request.retries
    if request.retry_interval is not None:
        extras["retryInterval"] = request.retry_interval
    if version == "1.6" and not request.signed:
        return "UpdateFirmware", {
            "location": request.location,
            "retrieveDate": _iso(request.retrieve_at),
            **extras,
        }
    firmware: dict[str, Any] = {
        "location": request.location,
        "retrieveDateTime": _iso(request.retrieve_at),
    }
    if request.install_at is not None:
        firmware["installDateTime"] = _iso(request.install_at)
    if request.signing_certificate:
        firmware["signingCertificate"] = request.signing_certificate
    if request.signature:
        firmware["signature"] = request.signature
    action = "SignedUpdateFirmware" if version == "1.6" else "UpdateFirmware"
    return action, {"requestId": request_id, "firmware": firmware, **extras}


# --- Waves and the halt ---------------------------------------------------------------------------


def plan_waves(count: int, *, canary: int, wave_size: int) -> list[int]:
    """The wave of each of ``count`` targets, in order: wave 0 is the canary of ``canary``
    targets (at least one), then waves of ``wave_size``."""
    if count <= 0:
        return []
    canary = max(1, min(canary, count))
    wave_size = max(1, wave_size)
    return [0 if i < canary else 1 + (i - canary) // wave_size for i in range(count)]


@dataclass(frozen=True, slots=True)
class TargetView:
    wave: int
    state: str


@dataclass(frozen=True, slots=True)
class CampaignView:
    """A campaign as the decision needs it."""

    state: str
    current_wave: int  # the last wave sent; -1 before the first
    max_failure_ratio: Decimal
    halt_baseline_wave: int  # failures in earlier waves were accepted when it was resumed
    targets: tuple[TargetView, ...]


class Step(StrEnum):
    WAIT = "wait"  # the current wave is under way, or the campaign sends nothing now
    SEND_WAVE = "send_wave"  # send the next wave
    HALT = "halt"  # failures passed the ratio
    COMPLETE = "complete"  # everything finished


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    wave: int = -1
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Tally:
    dispatched: int
    failed: int

    @property
    def ratio(self) -> Decimal:
        return Decimal(self.failed) / Decimal(self.dispatched) if self.dispatched else Decimal(0)


def failure_tally(targets: Iterable[TargetView], *, from_wave: int, up_to_wave: int) -> Tally:
    """Targets sent in waves ``from_wave`` to ``up_to_wave`` (skipped ones do not count), and how
    many of them failed."""
    dispatched = failed = 0
    for target in targets:
        if not from_wave <= target.wave <= up_to_wave:
            continue
        if target.state in (TargetState.PENDING, TargetState.SKIPPED):
            continue
        dispatched += 1
        failed += target.state in FAILED_TARGET_STATES
    return Tally(dispatched=dispatched, failed=failed)


def _percent(ratio: Decimal) -> str:
    return f"{(ratio * 100).quantize(Decimal('1'))}%"


def decide(campaign: CampaignView) -> Decision:
    """What a campaign does next.

    Failures are counted over the targets sent since the operator last resumed it (all of them at
    first): past ``max_failure_ratio`` the campaign halts and sends nothing more. Otherwise the
    next wave goes out once every target of the waves sent so far has finished (the canary wave
    first, on its own), and the campaign completes when the last wave has finished.
    """
    if campaign.state != CampaignState.RUNNING:
        return Decision(Step.WAIT)
    targets = campaign.targets
    tally = failure_tally(
        targets, from_wave=campaign.halt_baseline_wave, up_to_wave=campaign.current_wave
    )
    if tally.failed and tally.ratio > campaign.max_failure_ratio:
        return Decision(
            Step.HALT,
            reason=(
                f"{tally.failed} of {tally.dispatched} targets failed ({_percent(tally.ratio)}), "
                f"above the allowed {_percent(campaign.max_failure_ratio)}"
            ),
        )
    sent = [t for t in targets if t.wave <= campaign.current_wave]
    if any(t.state not in FINISHED_TARGET_STATES for t in sent):
        return Decision(Step.WAIT)
    later = sorted({t.wave for t in targets if t.wave > campaign.current_wave})
    if later:
        return Decision(Step.SEND_WAVE, wave=later[0])
    return Decision(Step.COMPLETE)


def counts(states: Sequence[str]) -> dict[str, int]:
    """How many targets are in each state, every state named (zero included)."""
    tally = {state.value: 0 for state in TargetState}
    for state in states:
        tally[state] = tally.get(state, 0) + 1
    return tally
