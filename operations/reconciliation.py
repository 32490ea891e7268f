"""Transaction reconciliation: find sessions whose state we doubt, ask the charger, and close or
correct them with a recorded reason and an audit trail.

Three doubts are detected: a session still open on a connector that reports Available, a session
open across a reboot that no StopTransaction ended, and a StopTransaction for a transaction we do
not know (``UnmatchedStop``). A doubted session is put to the charger (1.6: TriggerMessage for
the connector's StatusNotification; 2.x: GetTransactionStatus) through ``command_create``; its
answer (``command.updated``) or the status that follows decides. What cannot be decided waits for
an operator, who may close or dismiss any case with a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chargers import command_services, events, normalize
from chargers.alerts import alert_clear, alert_raise
from chargers.commands import CommandState
from chargers.models import (
    Alert,
    ChargerEvent,
    Command,
    ConnectorStatus,
    ConnectorStatusChange,
    MeterSample,
    Session,
    SessionState,
    UnmatchedStop,
)

from . import verdicts
from .models import ReconciliationCase, ReconciliationEntry

logger = logging.getLogger(__name__)

SYSTEM = "reconciliation"
# The reason a session closed here carries, as a StopTransaction's reason would.
STOP_REASON = "Reconciled"
# Sessions keep energies to the milliwatt-hour.
WH = Decimal("0.001")
QUESTIONS = frozenset({"TriggerMessage", "GetTransactionStatus"})
UNRESOLVED = (
    ReconciliationCase.State.OPEN,
    ReconciliationCase.State.ASKED,
    ReconciliationCase.State.REVIEW,
)
Case = ReconciliationCase
State = ReconciliationCase.State
Resolution = ReconciliationCase.Resolution


def grace() -> timedelta:
    """How long a doubt must last before it is acted on: a stop in flight gets there first."""
    return timedelta(seconds=settings.CPMS_RECONCILIATION_GRACE)


def _actor(user: User | None) -> str:
    return user.get_username() if user is not None else SYSTEM


def _entry(
    case: Case, step: str, note: str = "", *, user: User | None = None, **detail: Any
) -> None:
    ReconciliationEntry.objects.create(
        case=case, step=step, note=note, actor=_actor(user), user=user, detail=detail
    )


def _iso(value: datetime | None) -> str | None:
    return normalize.format_datetime(value) if value is not None else None


# --- Detection ----------------------------------------------------------------------------------


def _open(charger_id: int, kind: str, note: str, **fields: Any) -> Case | None:
    """A new case, or None when the same doubt already has an unresolved one."""
    try:
        with transaction.atomic():
            case = Case.objects.create(charger_id=charger_id, kind=kind, **fields)
            _entry(case, "detected", note)
    except IntegrityError:
        return None
    return case


def _unresolved_sessions() -> Any:
    return Case.objects.filter(state__in=UNRESOLVED, session__isnull=False).values("session_id")


def reconciliation_detect(*, now: datetime | None = None) -> list[Case]:
    """Open a case for every doubt that has lasted the grace period and has none yet."""
    now = now or timezone.now()
    settled = now - grace()
    created: list[Case] = []
    active = Session.objects.filter(state=SessionState.ACTIVE).exclude(
        pk__in=_unresolved_sessions()
    )
    for session in active.filter(
        connector__status=ConnectorStatus.AVAILABLE,
        connector__status_at__gte=F("started_at"),
        connector__status_at__lte=settled,
    ).select_related("connector")[:500]:
        case = _open(
            session.charger_id,
            Case.Kind.OPEN_ON_AVAILABLE,
            f"Connector {session.connector_number} reported Available at "
            f"{_iso(session.connector.status_at if session.connector else None)} while "
            f"transaction {session.transaction_id} is open.",
            session=session,
        )
        if case is not None:
            created.append(case)
    for session in active.filter(
        charger__last_boot_at__gt=F("started_at"), charger__last_boot_at__lte=settled
    ).select_related("charger")[:500]:
        case = _open(
            session.charger_id,
            Case.Kind.REBOOT_WITHOUT_STOP,
            f"The charger booted at {_iso(session.charger.last_boot_at)} and sent no stop for "
            f"transaction {session.transaction_id}.",
            session=session,
        )
        if case is not None:
            created.append(case)
    for stop in (
        UnmatchedStop.objects.filter(resolved=False, received_at__lte=settled)
        .exclude(
            pk__in=Case.objects.filter(state__in=UNRESOLVED, unmatched_stop__isnull=False).values(
                "unmatched_stop_id"
            )
        )
        .order_by("received_at")[:500]
    ):
        case = _open(
            stop.charger_id,
            Case.Kind.UNKNOWN_STOP,
            f"A StopTransaction arrived for transaction {stop.transaction_id or '(none)'}, "
            "which no session has.",
            unmatched_stop=stop,
        )
        if case is not None:
            created.append(case)
    return created


# --- Asking the charger -------------------------------------------------------------------------


def reconciliation_ask(
    *, case: Case, user: User | None = None, now: datetime | None = None
) -> Command | None:
    """Put a doubted session to its charger; None when the charger cannot be asked now."""
    now = now or timezone.now()
    session = case.session
    if session is None or case.state == State.RESOLVED:
        return None
    if session.state != SessionState.ACTIVE:
        _resolve_stopped(case)
        return None
    # Asked in the version the charger speaks now, which may not be the session's.
    action, payload = _question(session.charger.ocpp_version, session)
    try:
        with transaction.atomic():
            command = command_services.command_create(
                charger=session.charger,
                action=action,
                payload=payload,
                requested_by=user,
                system=SYSTEM,
            )
            moved = Case.objects.filter(pk=case.pk, state__in=UNRESOLVED).update(
                state=State.ASKED, command=command, asked_at=now
            )
            if not moved:
                transaction.set_rollback(True)
                return None
            case.state, case.command, case.asked_at = State.ASKED, command, now
            _entry(
                case,
                "asked",
                f"Sent {action} to the charger.",
                user=user,
                command=command.pk,
                payload=payload,
            )
    except command_services.CommandRefused as exc:
        # Offline, or never connected: asked again on a later pass once it is back.
        Case.objects.filter(pk=case.pk).update(asked_at=now)
        logger.info("reconciliation case %s not asked: %s", case.pk, exc)
        return None
    return command


def _question(version: str, session: Session) -> tuple[str, dict[str, Any]]:
    if version == "1.6":
        payload: dict[str, Any] = {"requestedMessage": "StatusNotification"}
        if session.connector_number:
            payload["connectorId"] = session.connector_number
        return "TriggerMessage", payload
    return "GetTransactionStatus", {"transactionId": session.transaction_id}


# --- Deciding -----------------------------------------------------------------------------------


def _last_energy(session: Session, until: datetime | None = None) -> MeterSample | None:
    samples = MeterSample.objects.filter(
        session=session, measurand=normalize.ENERGY_REGISTER, phase="", value__isnull=False
    )
    if until is not None:
        samples = samples.filter(timestamp__lte=until)
    return samples.order_by("-timestamp").first()


def _session_event(session: Session) -> dict[str, Any]:
    return {
        "session": session.pk,
        "transaction_id": session.transaction_id,
        "connector": session.connector_number,
        "state": session.state,
        "energy_wh": str(session.energy_wh),
        "started_at": normalize.format_datetime(session.started_at),
        "stopped_at": _iso(session.stopped_at),
    }


def _evidence_time(case: Case, session: Session, now: datetime) -> datetime:
    """When the session most likely ended: the Available status or the boot that showed it."""
    if case.kind == Case.Kind.OPEN_ON_AVAILABLE and session.connector is not None:
        return session.connector.status_at or now
    if case.kind == Case.Kind.REBOOT_WITHOUT_STOP and session.charger.last_boot_at:
        return session.charger.last_boot_at
    return now


def _close_session(
    case: Case,
    *,
    reason: str,
    user: User | None = None,
    at: datetime | None = None,
    meter_stop_wh: Decimal | None = None,
    resolution: str = Resolution.SESSION_CLOSED,
    stop_id_tag: str = "",
) -> bool:
    """Close the case's session (inside the caller's transaction); False when it already ended."""
    now = timezone.now()
    assert case.session_id is not None
    session = (
        Session.objects.select_for_update(of=("self",))
        .select_related("charger", "connector")
        .get(pk=case.session_id)
    )
    if session.state != SessionState.ACTIVE:
        return False
    stopped_at = at or _evidence_time(case, session, now)
    last = _last_energy(session)
    if last is not None and last.timestamp > stopped_at:
        stopped_at = last.timestamp  # it was still metering then
    stopped_at = max(min(stopped_at, now), session.started_at)
    if meter_stop_wh is None:
        meter_stop_wh = last.value if last is not None and last.value is not None else None
    if meter_stop_wh is None or meter_stop_wh < session.meter_start_wh:
        meter_stop_wh = max(session.meter_start_wh, session.meter_start_wh + session.energy_wh)
    meter_stop_wh = meter_stop_wh.quantize(WH)
    before = {
        "state": session.state,
        "stopped_at": None,
        "meter_stop_wh": None,
        "energy_wh": str(session.energy_wh),
    }
    session.state = SessionState.COMPLETED
    session.stopped_at = stopped_at
    session.meter_stop_wh = meter_stop_wh
    session.energy_wh = meter_stop_wh - session.meter_start_wh
    session.stop_reason = STOP_REASON
    if stop_id_tag:
        session.stop_id_tag = stop_id_tag
    session.save(
        update_fields=[
            "state",
            "stopped_at",
            "meter_stop_wh",
            "energy_wh",
            "stop_reason",
            "stop_id_tag",
            "updated_at",
        ]
    )
    after = {
        "state": session.state,
        "stopped_at": _iso(stopped_at),
        "meter_stop_wh": str(meter_stop_wh),
        "energy_wh": str(session.energy_wh),
    }
    _settle(case, resolution, reason, user=user)
    _entry(
        case,
        "session_closed" if resolution == Resolution.SESSION_CLOSED else "session_corrected",
        reason,
        user=user,
        session=session.pk,
        before=before,
        after=after,
    )
    ChargerEvent.objects.create(
        charger_id=session.charger_id,
        kind=ChargerEvent.Kind.RECONCILIATION,
        status="SessionClosed" if resolution == Resolution.SESSION_CLOSED else "SessionCorrected",
        detail={
            "case": case.pk,
            "session": session.pk,
            "transaction_id": session.transaction_id,
            "reason": reason,
            "meter_stop_wh": str(meter_stop_wh),
        },
    )
    # Ended like any other session, so that everything downstream (billing) sees it end.
    events.publish(
        "session.ended",
        organization_pk=session.charger.organization_id,
        charger=session.charger.identity,
        data=_session_event(session),
    )
    return True


def _settle(case: Case, resolution: str, reason: str, *, user: User | None = None) -> None:
    was_review = case.state == State.REVIEW
    case.state = State.RESOLVED
    case.resolution = resolution
    case.reason = reason
    case.resolved_at = timezone.now()
    case.resolved_by = user
    case.save(update_fields=["state", "resolution", "reason", "resolved_at", "resolved_by"])
    if was_review:
        _review_alert_clear(case)


def _connector_of(case: Case) -> int | None:
    return case.session.connector_number if case.session is not None else None


def _to_review(case: Case, reason: str) -> None:
    """Hand the case to an operator, with an alert so that someone hears of it."""
    case.state = State.REVIEW
    case.reason = reason
    case.save(update_fields=["state", "reason"])
    alert_raise(
        charger=case.charger,
        kind=Alert.Kind.RECONCILIATION,
        connector_id=_connector_of(case),
        severity="minor",
        message=f"Reconciliation case {case.pk} needs an operator: {reason}",
        details={"case": case.pk},
    )


def _review_alert_clear(case: Case) -> None:
    """The last case of its charger and connector waiting for an operator is settled."""
    connector = _connector_of(case)
    waiting = Case.objects.filter(charger_id=case.charger_id, state=State.REVIEW).exclude(
        pk=case.pk
    )
    if any(_connector_of(other) == connector for other in waiting.select_related("session")):
        return
    alert_clear(charger=case.charger, kind=Alert.Kind.RECONCILIATION, connector_id=connector)


def _locked(case_pk: int) -> Case | None:
    return (
        Case.objects.select_for_update(of=("self",))
        .filter(pk=case_pk, state__in=UNRESOLVED)
        .select_related("session", "charger", "command")
        .first()
    )


def _resolve_stopped(case: Case) -> None:
    with transaction.atomic():
        locked = _locked(case.pk)
        if locked is None:
            return
        session = locked.session
        note = (
            f"The charger's own stop closed the session ({session.stop_reason or 'no reason'})."
            if session is not None
            else "The session is gone."
        )
        _settle(locked, Resolution.STOPPED_BY_CHARGER, note)
        _entry(locked, "stopped_by_charger", note)


def _apply(case_pk: int, finding: verdicts.Finding, **answer: Any) -> str:
    """Act on what the charger said: close, keep, ask again later, or hand to an operator."""
    with transaction.atomic():
        case = _locked(case_pk)
        if case is None or case.session is None:
            return ""
        if case.session.state != SessionState.ACTIVE:
            _settle(case, Resolution.STOPPED_BY_CHARGER, "The charger's own stop closed it.")
            _entry(case, "stopped_by_charger", "The charger's own stop closed the session.")
            return case.state
        _entry(case, "answer", finding.reason, verdict=finding.verdict.value, **answer)
        if finding.verdict == verdicts.Verdict.CLOSE:
            _close_session(case, reason=finding.reason)
        elif finding.verdict == verdicts.Verdict.ONGOING:
            _settle(case, Resolution.ONGOING, finding.reason)
        elif finding.verdict == verdicts.Verdict.WAIT:
            case.state = State.OPEN
            case.save(update_fields=["state"])
        else:
            _to_review(case, finding.reason)
        return case.state


def reconciliation_answer_record(*, command_pk: int) -> str:
    """A question we put to a charger finished: act on its answer. Returns the case's state."""
    case = (
        Case.objects.filter(command_id=command_pk, state=State.ASKED)
        .select_related("command", "session", "charger")
        .first()
    )
    if case is None or case.command is None or case.session is None:
        return ""
    command = case.command
    state = command.state
    if command.action == "GetTransactionStatus":
        if state == CommandState.ANSWERED:
            answer = command.response or {}
            finding = verdicts.from_transaction_status(
                ongoing_indicator=answer.get("ongoingIndicator"),
                messages_in_queue=bool(answer.get("messagesInQueue", False)),
            )
            return _apply(case.pk, finding, response=answer)
        if state in (CommandState.TIMEOUT, CommandState.FAILED):
            return _reopen(case, f"GetTransactionStatus {state}; asked again on a later pass.")
        return _apply(
            case.pk,
            verdicts.Finding(
                verdicts.Verdict.REVIEW,
                f"The charger would not answer GetTransactionStatus ({state}"
                f"{': ' + command.error_code if command.error_code else ''}).",
            ),
        )
    # 1.6: TriggerMessage. Accepted means the status follows; it is read when it arrives.
    if state == CommandState.ACCEPTED:
        _entry(case, "answer", "The charger accepted; its connector status follows.")
        return reconciliation_status_check(case=case) or case.state
    if state in (CommandState.TIMEOUT, CommandState.FAILED):
        return _reopen(case, f"TriggerMessage {state}; asked again on a later pass.")
    # Rejected or not implemented: the last status the connector reported has to do.
    session = case.session
    status = session.connector.status if session.connector else ""
    finding = verdicts.from_connector_status(status)
    return _apply(
        case.pk,
        verdicts.Finding(
            finding.verdict,
            f"The charger would not trigger a status ({command.response_status or state}); "
            f"by its last one: {finding.reason}",
        ),
        connector_status=status,
    )


def _reopen(case: Case, note: str) -> str:
    with transaction.atomic():
        locked = _locked(case.pk)
        if locked is None:
            return ""
        locked.state = State.OPEN
        locked.save(update_fields=["state"])
        _entry(locked, "not_answered", note)
        return locked.state


def reconciliation_status_check(*, case: Case, now: datetime | None = None) -> str:
    """A 1.6 case whose TriggerMessage was accepted: decide on the status reported since, or on
    the last one when none came within the grace period. "" while it still waits."""
    now = now or timezone.now()
    session = case.session
    if (
        case.state != State.ASKED
        or session is None
        or session.connector_id is None
        or case.asked_at is None
    ):
        return ""
    reported = (
        ConnectorStatusChange.objects.filter(
            connector_id=session.connector_id, received_at__gte=case.asked_at
        )
        .order_by("-received_at", "-id")
        .first()
    )
    if reported is not None:
        finding = verdicts.from_connector_status(reported.status)
        return _apply(case.pk, finding, connector_status=reported.status)
    if now - case.asked_at < grace():
        return ""
    session.connector.refresh_from_db(fields=["status"])  # type: ignore[union-attr]
    status = session.connector.status if session.connector else ""
    finding = verdicts.from_connector_status(status)
    return _apply(
        case.pk,
        verdicts.Finding(
            finding.verdict, f"No status came after the trigger; by the last one: {finding.reason}"
        ),
        connector_status=status,
    )


def reconciliation_charger_statuses(*, charger_identity: str) -> int:
    """A charger reported connector statuses: decide its 1.6 cases that waited for one."""
    decided = 0
    for case in Case.objects.filter(
        state=State.ASKED,
        charger__identity=charger_identity,
        command__action="TriggerMessage",
        command__state=CommandState.ACCEPTED,
    ).select_related("session__connector", "charger"):
        decided += bool(reconciliation_status_check(case=case))
    return decided


# --- Unknown stops ------------------------------------------------------------------------------


def _stop_match(case: Case) -> str:
    """Correct the one open session an unknown stop must belong to; else an operator decides."""
    stop = case.unmatched_stop
    if stop is None:
        return ""
    candidates = Session.objects.filter(
        charger_id=stop.charger_id, state=SessionState.ACTIVE, started_at__lte=stop.timestamp
    )
    if stop.id_tag:
        candidates = candidates.filter(Q(id_tag=stop.id_tag) | Q(id_tag=""))
    found = list(candidates.order_by("-started_at")[:2])
    with transaction.atomic():
        locked = _locked(case.pk)
        if locked is None:
            return ""
        if len(found) != 1:
            _to_review(
                locked,
                "No open session of the charger can be the one this stop ends."
                if not found
                else "More than one open session could be the one this stop ends.",
            )
            _entry(locked, "review", locked.reason, candidates=[s.pk for s in found])
            return locked.state
        session = found[0]
        locked.session = session
        locked.save(update_fields=["session"])
        reason = (
            f"The stop for unknown transaction {stop.transaction_id or '(none)'} ends the "
            f"charger's one open session {session.transaction_id}."
        )
        _close_session(
            locked,
            reason=reason,
            at=stop.timestamp,
            meter_stop_wh=stop.meter_stop_wh,
            resolution=Resolution.SESSION_CORRECTED,
            stop_id_tag=stop.id_tag,
        )
        UnmatchedStop.objects.filter(pk=stop.pk).update(resolved=True)
        return locked.state


# --- Operators ----------------------------------------------------------------------------------


class CaseResolved(Exception):
    """The case is resolved already."""


def reconciliation_close(*, case: Case, reason: str, user: User | None) -> Case:
    """An operator closes the case's session now (or, for an unknown stop, marks it handled)."""
    with transaction.atomic():
        locked = _locked(case.pk)
        if locked is None:
            raise CaseResolved(f"Case {case.pk} is resolved already.")
        if locked.session is not None and locked.session.state == SessionState.ACTIVE:
            _close_session(locked, reason=reason, user=user)
        else:
            _settle(locked, Resolution.DISMISSED, reason, user=user)
            _entry(locked, "dismissed", reason, user=user)
        if locked.unmatched_stop_id is not None:
            UnmatchedStop.objects.filter(pk=locked.unmatched_stop_id).update(resolved=True)
    return locked


def reconciliation_dismiss(*, case: Case, reason: str, user: User | None) -> Case:
    """An operator leaves the session as it is and closes the case."""
    with transaction.atomic():
        locked = _locked(case.pk)
        if locked is None:
            raise CaseResolved(f"Case {case.pk} is resolved already.")
        _settle(locked, Resolution.DISMISSED, reason, user=user)
        _entry(locked, "dismissed", reason, user=user)
        if locked.unmatched_stop_id is not None:
            UnmatchedStop.objects.filter(pk=locked.unmatched_stop_id).update(resolved=True)
    return locked


# --- The periodic pass --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    detected: int = 0
    asked: int = 0
    decided: int = 0


def reconciliation_run(*, now: datetime | None = None) -> RunResult:
    """Detect, ask, and decide what the charger's answers (or silence) allow."""
    now = now or timezone.now()
    detected = len(reconciliation_detect(now=now))
    decided = asked = 0
    unresolved = Case.objects.select_related("session__connector", "session__charger", "charger")
    for case in unresolved.filter(
        state__in=[State.OPEN, State.ASKED, State.REVIEW],
        session__isnull=False,
    ).exclude(session__state=SessionState.ACTIVE)[:500]:
        _resolve_stopped(case)
        decided += 1
    for case in unresolved.filter(state=State.OPEN, unmatched_stop__isnull=False)[:500]:
        decided += bool(_stop_match(case))
    for case in unresolved.filter(state=State.OPEN, session__isnull=False, charger__connected=True)[
        :500
    ]:
        if case.asked_at is not None and now - case.asked_at < grace():
            continue
        asked += reconciliation_ask(case=case, now=now) is not None
    for case in unresolved.filter(
        state=State.ASKED,
        command__action="TriggerMessage",
        command__state=CommandState.ACCEPTED,
    )[:500]:
        decided += bool(reconciliation_status_check(case=case, now=now))
    # A question whose answer event was lost is read from its row.
    for pk in Case.objects.filter(
        state=State.ASKED,
        command__state__in=[
            CommandState.ANSWERED,
            CommandState.REJECTED,
            CommandState.ERROR,
            CommandState.TIMEOUT,
            CommandState.FAILED,
        ],
    ).values_list("command_id", flat=True)[:500]:
        if pk is not None:
            decided += bool(reconciliation_answer_record(command_pk=pk))
    return RunResult(detected=detected, asked=asked, decided=decided)
