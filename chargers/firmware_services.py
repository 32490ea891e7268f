"""Firmware campaigns: create and start them, send their waves, follow each target from the
charger's answer, its FirmwareStatusNotifications and its next boot, halt them when failures pass
the campaign's ratio, and let operators pause, resume or cancel them.

The decisions are ``chargers.firmware``'s; every change is published to the organization's
dashboards as a ``firmware.campaign`` event. Requests reach chargers as ``Command`` rows through
``command_services.command_create``, on whichever node holds the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from . import command_services, events
from .firmware import (
    ACTIVE_TARGET_STATES,
    FAILED_TARGET_STATES,
    FINISHED_TARGET_STATES,
    REPORTING_CAMPAIGN_STATES,
    CampaignState,
    CampaignView,
    FirmwareRequest,
    IllegalCampaignMove,
    Step,
    TargetState,
    TargetView,
    campaign_transition,
    decide,
    firmware_command,
    plan_waves,
    target_can_move,
    target_state_for_answer,
    target_state_for_status,
)
from .models import Alert, Charger, ChargerEvent, Command, FirmwareCampaign, FirmwareTarget

logger = logging.getLogger(__name__)

EVENT_KIND = "firmware.campaign"
FIRMWARE_ACTIONS = frozenset({"UpdateFirmware", "SignedUpdateFirmware"})
FIRMWARE_EVENT_KINDS = frozenset({ChargerEvent.Kind.FIRMWARE, ChargerEvent.Kind.SIGNED_FIRMWARE})
# A campaign sends at most this many waves in one step (waves whose targets were all skipped
# are passed at once).
MAX_WAVES_PER_STEP = 1000


class CampaignRefused(Exception):
    """The campaign cannot do that now (its state does not allow it, it has no targets, ...)."""


# --- Targets ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetFilter:
    """Which chargers of an organization a campaign targets: every condition given must hold."""

    organization_id: int
    site_id: int | None = None
    vendor: str = ""
    model: str = ""
    current_firmware_version: str = ""
    charger_ids: tuple[int, ...] = ()
    # Only the chargers of ``charger_ids`` (none when it is empty).
    by_list: bool = False
    # Chargers that already run this version are left out.
    firmware_version: str = ""


def chargers_matching(target_filter: TargetFilter) -> QuerySet[Charger]:
    """The chargers a campaign with this filter would target, by identity."""
    chargers = Charger.objects.filter(organization_id=target_filter.organization_id)
    if target_filter.site_id is not None:
        chargers = chargers.filter(site_id=target_filter.site_id)
    if target_filter.vendor:
        chargers = chargers.filter(vendor__iexact=target_filter.vendor)
    if target_filter.model:
        chargers = chargers.filter(model__iexact=target_filter.model)
    if target_filter.current_firmware_version:
        chargers = chargers.filter(firmware_version=target_filter.current_firmware_version)
    if target_filter.charger_ids or target_filter.by_list:
        chargers = chargers.filter(pk__in=target_filter.charger_ids)
    if target_filter.firmware_version:
        chargers = chargers.exclude(firmware_version=target_filter.firmware_version)
    return chargers.order_by("identity")


def campaign_filter(campaign: FirmwareCampaign) -> TargetFilter:
    return TargetFilter(
        organization_id=campaign.organization_id,
        site_id=campaign.site_id,
        vendor=campaign.vendor,
        model=campaign.model,
        current_firmware_version=campaign.current_firmware_version,
        charger_ids=tuple(campaign.chargers.values_list("pk", flat=True)),
        by_list=campaign.by_list,
        firmware_version=campaign.firmware_version,
    )


# --- Create and control -------------------------------------------------------------------------------


def firmware_campaign_create(
    *,
    organization_id: int,
    name: str,
    location: str,
    firmware_version: str = "",
    retrieve_at: datetime | None = None,
    install_at: datetime | None = None,
    retries: int | None = None,
    retry_interval: int | None = None,
    signature: str = "",
    signing_certificate: str = "",
    site_id: int | None = None,
    vendor: str = "",
    model: str = "",
    current_firmware_version: str = "",
    chargers: Iterable[Charger] = (),
    canary_count: int = 1,
    wave_size: int = 10,
    max_failure_ratio: Any = "0.2",
    target_timeout: int = 3600,
    deliver_when_offline: bool = True,
    created_by: Any = None,
) -> FirmwareCampaign:
    """A draft campaign; nothing is sent until it is started."""
    with transaction.atomic():
        campaign = FirmwareCampaign.objects.create(
            organization_id=organization_id,
            name=name,
            location=location,
            firmware_version=firmware_version,
            retrieve_at=retrieve_at,
            install_at=install_at,
            retries=retries,
            retry_interval=retry_interval,
            signature=signature,
            signing_certificate=signing_certificate,
            site_id=site_id,
            vendor=vendor,
            model=model,
            current_firmware_version=current_firmware_version,
            canary_count=canary_count,
            wave_size=wave_size,
            max_failure_ratio=max_failure_ratio,
            target_timeout=target_timeout,
            deliver_when_offline=deliver_when_offline,
            created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        )
        chosen = list(chargers)
        if chosen:
            campaign.chargers.set(chosen)
            campaign.by_list = True
            campaign.save(update_fields=["by_list"])
        _publish(campaign)
    return campaign


def _locked(campaign_pk: int) -> FirmwareCampaign:
    return FirmwareCampaign.objects.select_for_update().get(pk=campaign_pk)


def _move(campaign: FirmwareCampaign, target: CampaignState, **fields: Any) -> None:
    try:
        campaign.state = campaign_transition(campaign.state, target)
    except IllegalCampaignMove as exc:
        raise CampaignRefused(str(exc)) from None
    if target in (CampaignState.COMPLETED, CampaignState.CANCELLED):
        fields.setdefault("finished_at", timezone.now())
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.save(update_fields=["state", "updated_at", *fields])


def firmware_campaign_start(*, campaign_pk: int) -> FirmwareCampaign:
    """Resolve the campaign's targets from its filter, plan its waves and send the canary wave."""
    with transaction.atomic():
        campaign = _locked(campaign_pk)
        if campaign.state != CampaignState.DRAFT:
            raise CampaignRefused(f"The campaign is {campaign.state}; only a draft can start.")
        chargers = list(chargers_matching(campaign_filter(campaign)))
        if not chargers:
            raise CampaignRefused("No charger matches the campaign's filter.")
        waves = plan_waves(
            len(chargers), canary=campaign.canary_count, wave_size=campaign.wave_size
        )
        FirmwareTarget.objects.bulk_create(
            [
                FirmwareTarget(
                    campaign=campaign,
                    charger=charger,
                    wave=wave,
                    firmware_before=charger.firmware_version,
                )
                for charger, wave in zip(chargers, waves, strict=True)
            ]
        )
        _move(campaign, CampaignState.RUNNING, started_at=timezone.now())
        _advance(campaign)
    return campaign


def firmware_campaign_pause(*, campaign_pk: int) -> FirmwareCampaign:
    """Send nothing new; targets already sent go on reporting."""
    with transaction.atomic():
        campaign = _locked(campaign_pk)
        _move(campaign, CampaignState.PAUSED)
        _publish(campaign)
    return campaign


def firmware_campaign_resume(*, campaign_pk: int) -> FirmwareCampaign:
    """Go on after a pause or a halt. Failures so far are accepted: the ratio counts again from
    the next wave."""
    with transaction.atomic():
        campaign = _locked(campaign_pk)
        was = campaign.state
        _move(campaign, CampaignState.RUNNING, halt_reason="")
        if was == CampaignState.HALTED:
            campaign.halt_baseline_wave = campaign.current_wave + 1
            campaign.save(update_fields=["halt_baseline_wave"])
        _advance(campaign)
    return campaign


def firmware_campaign_cancel(*, campaign_pk: int) -> FirmwareCampaign:
    """Stop for good: targets not sent yet are skipped. Chargers already updating carry on, and
    what they report is still recorded."""
    with transaction.atomic():
        campaign = _locked(campaign_pk)
        _move(campaign, CampaignState.CANCELLED)
        FirmwareTarget.objects.filter(campaign=campaign, state=TargetState.PENDING).update(
            state=TargetState.SKIPPED,
            reason="The campaign was cancelled.",
            finished_at=timezone.now(),
        )
        _publish(campaign)
    return campaign


def firmware_campaign_advance(*, campaign_pk: int) -> FirmwareCampaign | None:
    """Take the campaign's next step, if any: send a wave, halt, or complete."""
    with transaction.atomic():
        campaign = FirmwareCampaign.objects.select_for_update().filter(pk=campaign_pk).first()
        if campaign is None:
            return None
        _advance(campaign)
    return campaign


def _view(campaign: FirmwareCampaign) -> CampaignView:
    return CampaignView(
        state=campaign.state,
        current_wave=campaign.current_wave,
        max_failure_ratio=campaign.max_failure_ratio,
        halt_baseline_wave=campaign.halt_baseline_wave,
        targets=tuple(
            TargetView(wave=wave, state=state)
            for wave, state in campaign.targets.values_list("wave", "state")
        ),
    )


def _advance(campaign: FirmwareCampaign) -> None:
    """Within the caller's transaction, with the campaign's row locked."""
    for _ in range(MAX_WAVES_PER_STEP):
        decision = decide(_view(campaign))
        if decision.step == Step.SEND_WAVE:
            campaign.current_wave = decision.wave
            campaign.save(update_fields=["current_wave", "updated_at"])
            _send_wave(campaign, decision.wave)
            continue
        if decision.step == Step.HALT:
            _move(campaign, CampaignState.HALTED, halt_reason=decision.reason[:300])
            logger.warning("firmware campaign %s halted: %s", campaign.pk, decision.reason)
        elif decision.step == Step.COMPLETE:
            _move(campaign, CampaignState.COMPLETED)
        break
    _publish(campaign)


def _request(campaign: FirmwareCampaign, now: datetime) -> FirmwareRequest:
    return FirmwareRequest(
        location=campaign.location,
        retrieve_at=campaign.retrieve_at or now,
        install_at=campaign.install_at,
        retries=campaign.retries,
        retry_interval=campaign.retry_interval,
        signature=campaign.signature,
        signing_certificate=campaign.signing_certificate,
    )


def _send_wave(campaign: FirmwareCampaign, wave: int) -> None:
    now = timezone.now()
    request = _request(campaign, now)
    targets = (
        FirmwareTarget.objects.filter(campaign=campaign, wave=wave, state=TargetState.PENDING)
        .select_related("charger")
        .order_by("id")
    )
    for target in targets:
        charger = target.charger
        if not charger.ocpp_version:
            _finish(target, TargetState.SKIPPED, "The charger has never connected.")
            continue
        if not charger.connected and not campaign.deliver_when_offline:
            _finish(target, TargetState.SKIPPED, "The charger was offline.")
            continue
        action, payload = firmware_command(charger.ocpp_version, request, target.pk)
        try:
            # A savepoint: a refused command leaves nothing behind but the target's reason.
            with transaction.atomic():
                command = command_services.command_create(
                    charger=charger,
                    action=action,
                    payload=payload,
                    deliver_when_offline=campaign.deliver_when_offline,
                    system=f"firmware campaign {campaign.pk}",
                )
        except command_services.CommandInvalid as exc:
            _finish(target, TargetState.FAILED, exc.message)
            continue
        except command_services.CommandRefused as exc:
            _finish(target, TargetState.SKIPPED, str(exc))
            continue
        target.state = TargetState.SENT
        target.command = command
        target.request_id = target.pk if "requestId" in payload else None
        target.dispatched_at = now
        target.reason = "Queued until the charger connects." if not charger.connected else ""
        target.save(update_fields=["state", "command", "request_id", "dispatched_at", "reason"])


def _finish(target: FirmwareTarget, state: TargetState, reason: str) -> None:
    target.state = state
    target.reason = reason[:300]
    target.finished_at = timezone.now()
    target.save(update_fields=["state", "reason", "finished_at"])


# --- What chargers report -------------------------------------------------------------------------


def _target_move(target: FirmwareTarget, goal: TargetState, **fields: Any) -> bool:
    """One conditional UPDATE from the state the target was read in."""
    if not target_can_move(target.state, goal):
        return False
    if goal in FINISHED_TARGET_STATES:
        fields.setdefault("finished_at", timezone.now())
    moved = FirmwareTarget.objects.filter(pk=target.pk, state=target.state).update(
        state=goal, **fields
    )
    return bool(moved)


def _alert(target: FirmwareTarget, goal: TargetState, reason: str) -> None:
    """A failed (or timed-out) update raises a firmware_failed alert for its charger; a
    successful one resolves it."""
    from .alerts import alert_clear, alert_raise

    charger = Charger.objects.filter(pk=target.charger_id).first()
    if charger is None:
        return
    if goal == TargetState.SUCCEEDED:
        alert_clear(charger=charger, kind=Alert.Kind.FIRMWARE_FAILED)
    elif goal in FAILED_TARGET_STATES:
        alert_raise(
            charger=charger,
            kind=Alert.Kind.FIRMWARE_FAILED,
            message=reason,
            details={"campaign": target.campaign_id, "target": target.pk},
        )


def _active_target(charger_pk: int, request_id: int | None) -> FirmwareTarget | None:
    targets = FirmwareTarget.objects.filter(
        charger_id=charger_pk,
        state__in=list(ACTIVE_TARGET_STATES),
        campaign__state__in=list(REPORTING_CAMPAIGN_STATES),
    ).order_by("-dispatched_at", "-id")
    if request_id is not None:
        targets = targets.filter(request_id=request_id)
    return targets.first()


def firmware_status_record(
    *, charger_pk: int, status: str, request_id: int | None, at: datetime | None = None
) -> FirmwareTarget | None:
    """A FirmwareStatusNotification of a charger that a campaign is updating: its target
    follows (matched by requestId where the version has one) and the campaign takes its next
    step. Returns the target that moved, if any."""
    target = _active_target(charger_pk, request_id)
    if target is None:
        return None
    at = at or timezone.now()
    goal = target_state_for_status(target.state, status)
    if goal is None:
        FirmwareTarget.objects.filter(pk=target.pk).update(status=status[:40], status_at=at)
        return None
    if not _target_move(target, goal, status=status[:40], status_at=at, reason=""):
        return None
    _alert(target, goal, f"The firmware update reported {status}.")
    _after_target(target.campaign_id)
    return target


def firmware_command_record(*, command_pk: int) -> FirmwareTarget | None:
    """The update request of a target finished: a refusal, error or failed delivery fails it."""
    target = FirmwareTarget.objects.filter(command_id=command_pk).first()
    if target is None or target.state not in ACTIVE_TARGET_STATES:
        return None
    command = Command.objects.only(
        "state", "response_status", "error_code", "error_description"
    ).get(pk=command_pk)
    goal = target_state_for_answer(command.state, command.response_status)
    if goal is None:
        if target.reason:
            FirmwareTarget.objects.filter(pk=target.pk).update(reason="")
        return None
    reason = (
        f"The charger answered {command.response_status}."
        if command.response_status
        else f"{command.error_code}: {command.error_description}".strip(": ")
    )
    if not _target_move(target, goal, reason=reason[:300]):
        return None
    _alert(target, goal, f"The firmware update request failed: {reason}")
    _after_target(target.campaign_id)
    return target


def firmware_boot_record(*, charger_pk: int) -> FirmwareTarget | None:
    """A charger that a campaign is updating booted: with the campaign's firmware version, it
    succeeded."""
    target = (
        FirmwareTarget.objects.filter(
            charger_id=charger_pk,
            state__in=list(ACTIVE_TARGET_STATES),
            campaign__state__in=list(REPORTING_CAMPAIGN_STATES),
        )
        .exclude(campaign__firmware_version="")
        .select_related("campaign", "charger")
        .order_by("-dispatched_at", "-id")
        .first()
    )
    if target is None or target.charger.firmware_version != target.campaign.firmware_version:
        return None
    if not _target_move(
        target,
        TargetState.SUCCEEDED,
        status_at=timezone.now(),
        reason=f"Booted with firmware {target.charger.firmware_version}.",
    ):
        return None
    _alert(target, TargetState.SUCCEEDED, "")
    _after_target(target.campaign_id)
    return target


def _after_target(campaign_pk: int) -> None:
    firmware_campaign_advance(campaign_pk=campaign_pk)


# --- The periodic check ---------------------------------------------------------------------------


def firmware_campaigns_tick(*, now: datetime | None = None) -> int:
    """Time out targets that reported nothing within their campaign's timeout, and let every
    running campaign take its next step (in case a message was lost). Returns how many targets
    timed out."""
    now = now or timezone.now()
    timed_out = 0
    campaigns: set[int] = set()
    for target in (
        FirmwareTarget.objects.filter(state__in=list(ACTIVE_TARGET_STATES))
        .select_related("campaign")
        .order_by("id")[:5000]
    ):
        last = target.status_at or target.dispatched_at or now
        limit = timedelta(seconds=target.campaign.target_timeout)
        if last + limit > now:
            continue
        reason = f"No outcome within {target.campaign.target_timeout} s."
        if _target_move(target, TargetState.TIMED_OUT, reason=reason):
            _alert(target, TargetState.TIMED_OUT, f"The firmware update timed out: {reason}")
            timed_out += 1
            campaigns.add(target.campaign_id)
    campaigns.update(
        FirmwareCampaign.objects.filter(state=CampaignState.RUNNING).values_list("pk", flat=True)
    )
    for pk in sorted(campaigns):
        firmware_campaign_advance(campaign_pk=pk)
    return timed_out


# --- Progress -----------------------------------------------------------------------------------------


def campaign_counts(campaign_pk: int) -> dict[str, int]:
    """How many targets are in each state, and in total."""
    rows = dict(
        FirmwareTarget.objects.filter(campaign_id=campaign_pk)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    tally = {state.value: int(rows.get(state.value, 0)) for state in TargetState}
    tally["total"] = sum(tally.values())
    return tally


def campaigns_with_counts(campaigns: QuerySet[FirmwareCampaign]) -> QuerySet[FirmwareCampaign]:
    """Campaigns annotated with ``n_<state>`` per target state and ``n_total``."""
    annotations: dict[str, Any] = {
        f"n_{state.value}": Count("targets", filter=Q(targets__state=state.value))
        for state in TargetState
    }
    return campaigns.annotate(n_total=Count("targets"), **annotations)


def _publish(campaign: FirmwareCampaign) -> None:
    """After commit: the campaign's state and counts, to its organization's dashboards."""
    organization_pk, pk = campaign.organization_id, campaign.pk

    def send_later() -> None:
        data = {
            "campaign": pk,
            "state": FirmwareCampaign.objects.filter(pk=pk).values_list("state", flat=True).first(),
            "counts": campaign_counts(pk),
        }
        message = {"type": "cpms.event", "kind": EVENT_KIND, "charger": "", "data": data}

        async def send(layer: Any) -> None:
            await layer.group_send(events.organization_group(organization_pk), message)

        events.send_soon(send)
        events.notify(EVENT_KIND, organization_pk=organization_pk, charger="", data=data)

    transaction.on_commit(send_later)
