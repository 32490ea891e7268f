"""Reservations: check and create them (ReserveNow), cancel them (CancelReservation), and move
them on as the charger answers, as sessions use them, as 2.x chargers report them, and as their
time passes.

Every change is published as a ``reservation.updated`` event. The commands go through
``chargers.command_services``; their answers reach us as ``command.updated`` events
(``chargers.reservation_receivers``), and the sweep catches up on any that were missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cpms.models import ApiToken

from . import command_services, events
from .commands import CommandState
from .models import (
    Charger,
    ChargerConfigurationKey,
    ChargerEvent,
    Command,
    Connector,
    IdToken,
    IdTokenStatus,
    Reservation,
    Session,
)
from .reservations import (
    LIVE,
    IllegalReservationMove,
    ReservationState,
    cancel_payload,
    reserve_now_answered,
    reserve_now_payload,
    status_update_state,
    transition,
)

logger = logging.getLogger(__name__)

EVENT_KIND = "reservation.updated"
# 2.x chargers report a reservation's lapse themselves (ReservationStatusUpdate); the sweep
# expires theirs only this long after their time, should the report never come.
REPORT_GRACE = timedelta(seconds=60)
# A requested reservation whose ReserveNow finished this long ago without its answer reaching
# the reservation (a lost event) is caught up by the sweep.
CATCH_UP_AFTER = timedelta(seconds=10)


class ReservationInvalid(Exception):
    """The request is not a valid reservation; ``errors`` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class ReservationRefused(Exception):
    """The reservation (or its cancel) cannot be done now: the charger is offline, or the
    reservation no longer holds its connector."""


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    """A checked request: what ``reservation_create`` sends."""

    charger: Charger
    connector: Connector | None
    connector_number: int
    id_token: IdToken
    expires_at: datetime


# --- Events ----------------------------------------------------------------------------------------


def _event_data(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation": reservation.pk,
        "reservation_id": reservation.reservation_id,
        "state": reservation.state,
        "connector": reservation.connector_number,
        "reason": reservation.reason,
        "session": reservation.session_id,
    }


def _publish(reservation: Reservation, identity: str) -> None:
    events.publish(
        EVENT_KIND,
        organization_pk=reservation.organization_id,
        charger=identity,
        data=_event_data(reservation),
    )


def _move(reservation: Reservation, target: ReservationState, **fields: Any) -> bool:
    """Move a reservation on from the state it was read in, in one conditional UPDATE: False
    when the machine refuses the move, or when someone moved it first."""
    try:
        state = transition(reservation.state, target)
    except IllegalReservationMove as exc:
        logger.info("reservation %s: %s", reservation.pk, exc)
        return False
    now = timezone.now()
    if state not in LIVE:
        fields.setdefault("finished_at", now)
    moved = Reservation.objects.filter(pk=reservation.pk, state=reservation.state).update(
        state=state, updated_at=now, **fields
    )
    if not moved:
        return False
    reservation.state = state
    for name, value in fields.items():
        setattr(reservation, name, value)
    identity = Charger.objects.values_list("identity", flat=True).get(pk=reservation.charger_id)
    _publish(reservation, identity)
    return True


# --- Check and create ------------------------------------------------------------------------------


def _reserves_any_connector(charger: Charger) -> bool:
    """1.6: whether the charger reports ReserveConnectorZeroSupported true."""
    value = (
        ChargerConfigurationKey.objects.filter(
            charger_id=charger.pk, key="ReserveConnectorZeroSupported"
        )
        .values_list("value", flat=True)
        .first()
    )
    return (value or "").strip().lower() == "true"


def reservation_check(
    *,
    charger: Charger,
    connector: int | None,
    id_token: str,
    expires_at: datetime,
    now: datetime | None = None,
) -> ReservationRequest:
    """Check a reservation request against what we know of the charger and the id token;
    ``ReservationInvalid`` names every field that is wrong."""
    now = now or timezone.now()
    # OCPP carries whole seconds: keep the moment the charger is told.
    expires_at = expires_at.replace(microsecond=0)
    errors: dict[str, list[str]] = {}
    token = IdToken.objects.filter(organization_id=charger.organization_id, token=id_token).first()
    if token is None:
        errors["id_token"] = [f"{id_token!r} is not an id token of this organization."]
    elif token.status != IdTokenStatus.ACCEPTED:
        errors["id_token"] = [f"{id_token!r} is {token.status}; only Accepted tokens reserve."]
    elif token.expires_at is not None and token.expires_at <= now:
        errors["id_token"] = [f"{id_token!r} expired on {token.expires_at:%Y-%m-%d %H:%M} UTC."]
    elif charger.ocpp_version == "1.6" and len(token.token) > 20:
        errors["id_token"] = ["OCPP 1.6 id tags have at most 20 characters."]
    maximum = timedelta(hours=settings.CPMS_RESERVATION_MAX_HOURS)
    if expires_at <= now:
        errors["expires_at"] = ["The expiry must be in the future."]
    elif expires_at > now + maximum:
        errors["expires_at"] = [
            f"A reservation lasts at most {settings.CPMS_RESERVATION_MAX_HOURS:g} hours "
            "(CPMS_RESERVATION_MAX_HOURS)."
        ]
    number = connector or 0
    row: Connector | None = None
    if not charger.ocpp_version:
        errors["charger"] = [
            f"{charger.identity} has never connected, so it cannot take reservations yet."
        ]
    elif number == 0:
        if charger.ocpp_version == "1.6" and not _reserves_any_connector(charger):
            errors["connector"] = [
                f"{charger.identity} does not report ReserveConnectorZeroSupported true; "
                "name the connector to reserve."
            ]
    else:
        connectors = Connector.objects.filter(charger_id=charger.pk)
        if charger.ocpp_version == "1.6":
            row = connectors.filter(connector_id=number).first()
        else:
            row = connectors.filter(evse_id=number).order_by("connector_id").first()
        if row is None:
            what = "connector" if charger.ocpp_version == "1.6" else "EVSE"
            errors["connector"] = [f"{charger.identity} has no {what} {number}."]
    if "connector" not in errors and "charger" not in errors and _overlapping(charger, number):
        errors["connector"] = [
            "An active reservation already holds this connector; cancel it first."
        ]
    if errors:
        raise ReservationInvalid(errors)
    assert token is not None
    return ReservationRequest(
        charger=charger,
        connector=row,
        connector_number=number,
        id_token=token,
        expires_at=expires_at,
    )


def _overlapping(charger: Charger, number: int) -> bool:
    return Reservation.objects.filter(
        charger_id=charger.pk,
        connector_number=number,
        state__in=list(LIVE),
        expires_at__gt=timezone.now(),
    ).exists()


def reservation_create(
    *,
    request: ReservationRequest,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
) -> Reservation:
    """Create a reservation and send ReserveNow for it; the charger's answer moves it on.

    Raises ``ReservationRefused`` for an offline charger (or one another CSMS controls), and
    ``ReservationInvalid`` when a reservation took the connector meanwhile.
    """
    charger = request.charger
    with transaction.atomic():
        # One reservation at a time per charger: the id counter and the overlap check.
        locked = Charger.objects.select_for_update().only("pk").get(pk=charger.pk)
        if _overlapping(locked, request.connector_number):
            raise ReservationInvalid(
                {"connector": ["An active reservation already holds this connector."]}
            )
        Charger.objects.filter(pk=charger.pk).update(
            last_reservation_id=F("last_reservation_id") + 1
        )
        reservation_id = Charger.objects.values_list("last_reservation_id", flat=True).get(
            pk=charger.pk
        )
        token = request.id_token
        reservation = Reservation.objects.create(
            organization_id=charger.organization_id,
            charger_id=charger.pk,
            connector=request.connector,
            connector_number=request.connector_number,
            id_token=token,
            id_tag=token.token,
            id_token_type=token.type,
            group_token=token.group_token,
            reservation_id=reservation_id,
            ocpp_version=charger.ocpp_version,
            expires_at=request.expires_at,
            created_by=requested_by if getattr(requested_by, "pk", None) else None,
            api_token=api_token,
        )
        payload = reserve_now_payload(
            version=charger.ocpp_version,
            reservation_id=reservation_id,
            expires_at=request.expires_at,
            connector=request.connector_number,
            id_token=token.token,
            id_token_type=token.type,
            group_token=token.group_token,
        )
        try:
            command = command_services.command_create(
                charger=charger,
                action="ReserveNow",
                payload=payload,
                requested_by=requested_by,
                api_token=api_token,
                system="reservations",
            )
        except command_services.CommandInvalid as exc:
            raise ReservationInvalid({"id_token": [exc.message]}) from None
        except command_services.CommandRefused as exc:
            message = str(exc)
            if isinstance(exc, command_services.ChargerOffline):
                message = f"{charger.identity} is offline; a reservation needs a connected charger."
            raise ReservationRefused(message) from None
        reservation.commands.add(command)
        _publish(reservation, charger.identity)
    return reservation


def reservation_cancel(
    *,
    reservation: Reservation,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
) -> Command:
    """Send CancelReservation; the charger's answer cancels the reservation (Accepted) or
    leaves it as it is, with the reason (Rejected)."""
    if reservation.state != ReservationState.ACTIVE:
        raise ReservationRefused(
            f"Reservation {reservation.reservation_id} is {reservation.state}; only an active "
            "reservation can be cancelled."
        )
    with transaction.atomic():
        try:
            command = command_services.command_create(
                charger=reservation.charger,
                action="CancelReservation",
                payload=cancel_payload(reservation_id=reservation.reservation_id),
                requested_by=requested_by,
                api_token=api_token,
                system="reservations",
            )
        except command_services.CommandRefused as exc:
            message = str(exc)
            if isinstance(exc, command_services.ChargerOffline):
                message = (
                    f"{reservation.charger.identity} is offline, so the cancel was not sent; "
                    "the reservation still holds its connector until it expires."
                )
            raise ReservationRefused(message) from None
        reservation.commands.add(command)
        Reservation.objects.filter(pk=reservation.pk).update(reason="", updated_at=timezone.now())
    return command


# --- Answers, sessions, reports, time --------------------------------------------------------------


def reservation_command_record(*, command_pk: int) -> None:
    """Move the reservations of a finished ReserveNow or CancelReservation command on."""
    command = (
        Command.objects.filter(pk=command_pk)
        .only("pk", "action", "state", "response_status", "error_code", "error_description")
        .first()
    )
    if command is None:
        return
    for reservation in Reservation.objects.filter(commands=command):
        _command_applied(reservation, command)


def _command_applied(reservation: Reservation, command: Command) -> None:
    state, status = command.state, command.response_status
    if command.action == "ReserveNow":
        target = reserve_now_answered(state, status)
        if target is None or reservation.state != ReservationState.REQUESTED:
            return
        if target == ReservationState.REJECTED:
            reason = status
        elif target == ReservationState.FAILED:
            reason = f"{command.error_code}: {command.error_description}".strip(": ")
        else:
            reason = ""
        _move(reservation, target, reason=reason[:300])
    elif command.action == "CancelReservation":
        if state == CommandState.ACCEPTED:
            _move(reservation, ReservationState.CANCELLED, reason="")
        elif state in (
            CommandState.REJECTED,
            CommandState.ERROR,
            CommandState.TIMEOUT,
            CommandState.FAILED,
        ):
            why = status or command.error_code or state
            reason = f"The charger did not cancel it ({why})."
            Reservation.objects.filter(pk=reservation.pk).update(
                reason=reason, updated_at=timezone.now()
            )
            reservation.reason = reason
            identity = Charger.objects.values_list("identity", flat=True).get(
                pk=reservation.charger_id
            )
            _publish(reservation, identity)


def reservation_use(*, session: Session) -> Reservation | None:
    """Mark the reservation a new session began with used, and link the session.

    2.x sessions and most 1.6 ones name it (reservationId); a 1.6 session that does not uses
    the live reservation on its connector (or on any connector) for its id tag or its parent.
    """
    live = Reservation.objects.filter(charger_id=session.charger_id, state__in=list(LIVE))
    reservation: Reservation | None = None
    if session.reservation_id is not None:
        reservation = live.filter(reservation_id=session.reservation_id).first()
    elif (session.ocpp_version or "1.6") == "1.6" and session.id_tag:
        parent = ""
        if session.id_token_id is not None:
            parent = (
                IdToken.objects.filter(pk=session.id_token_id)
                .values_list("group_token", flat=True)
                .first()
                or ""
            )
        token_match = Q(id_tag=session.id_tag)
        if parent:
            token_match |= Q(group_token=parent)
        reservation = (
            live.filter(token_match, connector_number__in=[session.connector_number, 0])
            .order_by("-connector_number", "created_at")
            .first()
        )
        if reservation is not None:
            Session.objects.filter(pk=session.pk).update(reservation_id=reservation.reservation_id)
            session.reservation_id = reservation.reservation_id
    if reservation is None:
        return None
    if not _move(reservation, ReservationState.USED, session=session):
        return None
    return reservation


def reservation_status_report(*, charger_pk: int, reservation_id: int, status: str) -> None:
    """A 2.x charger's ReservationStatusUpdate: kept as a charger event, and Expired or Removed
    ends the reservation."""
    from .services import charger_event_record

    with transaction.atomic():
        charger_event_record(
            charger_pk=charger_pk,
            kind=ChargerEvent.Kind.RESERVATION,
            status=status,
            request_id=reservation_id,
            detail={"reservation_id": reservation_id},
        )
        target = status_update_state(status)
        reservation = Reservation.objects.filter(
            charger_id=charger_pk, reservation_id=reservation_id, state__in=list(LIVE)
        ).first()
        if target is not None and reservation is not None:
            _move(reservation, target, reason=f"The charger reported it {status}.")


@dataclass(frozen=True, slots=True)
class SweepResult:
    expired: int = 0
    caught_up: int = 0


def reservations_sweep(*, now: datetime | None = None) -> SweepResult:
    """Expire live reservations whose time has passed (1.6 chargers say nothing when one
    lapses; 2.x ones are given ``REPORT_GRACE`` to report it), and apply the answers of
    finished ReserveNow commands whose event was lost."""
    now = now or timezone.now()
    expired = caught_up = 0
    due = Reservation.objects.filter(state__in=list(LIVE)).filter(
        Q(ocpp_version="1.6", expires_at__lte=now)
        | (~Q(ocpp_version="1.6") & Q(expires_at__lte=now - REPORT_GRACE))
    )
    for reservation in due.order_by("expires_at")[:1000]:
        expired += _move(
            reservation, ReservationState.EXPIRED, reason="Its time passed without a session."
        )
    stale = Reservation.objects.filter(
        state=ReservationState.REQUESTED,
        commands__action="ReserveNow",
        commands__finished_at__lt=now - CATCH_UP_AFTER,
    ).distinct()
    for reservation in stale[:1000]:
        for command in reservation.commands.filter(action="ReserveNow"):
            _command_applied(reservation, command)
        caught_up += reservation.state != ReservationState.REQUESTED
    return SweepResult(expired=expired, caught_up=caught_up)
