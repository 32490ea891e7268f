"""Commands to a charger, sans I/O: which CALLs a CSMS may send in each OCPP version, the
command's state machine, and what a charger's answer means for the command.

Nothing here touches the database or a socket; the services and the consumer build on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class CommandState(StrEnum):
    REQUESTED = "requested"  # created; the consumer holding the socket has been told
    QUEUED = "queued"  # waiting: behind another CALL, or for the charger to connect
    SENT = "sent"  # the CALL is out, its answer awaited
    ACCEPTED = "accepted"  # answered with an accepting status (Accepted, Scheduled, Unlocked, ...)
    REJECTED = "rejected"  # answered with any other status (Rejected, NotSupported, ...)
    ANSWERED = "answered"  # answered; the action's answer has no status (GetConfiguration, ...)
    ERROR = "error"  # answered with a CALLERROR, or with an answer that breaks the schema
    TIMEOUT = "timeout"  # no answer in time, or never delivered in time
    FAILED = "failed"  # could not be delivered: the connection closed, or the charger was offline


WAITING = frozenset({CommandState.REQUESTED, CommandState.QUEUED})
# On their way to the charger or its answer: each moves within a CALL timeout or so.
IN_FLIGHT = frozenset({CommandState.REQUESTED, CommandState.SENT})
FINISHED = frozenset(
    {
        CommandState.ACCEPTED,
        CommandState.REJECTED,
        CommandState.ANSWERED,
        CommandState.ERROR,
        CommandState.TIMEOUT,
        CommandState.FAILED,
    }
)
# Finished without the charger doing what was asked: these may be retried.
RETRYABLE = frozenset(
    {CommandState.REJECTED, CommandState.ERROR, CommandState.TIMEOUT, CommandState.FAILED}
)

_MOVES: dict[CommandState, frozenset[CommandState]] = {
    CommandState.REQUESTED: frozenset(
        {CommandState.QUEUED, CommandState.SENT, CommandState.TIMEOUT, CommandState.FAILED}
    ),
    CommandState.QUEUED: frozenset({CommandState.SENT, CommandState.TIMEOUT, CommandState.FAILED}),
    CommandState.SENT: frozenset(
        {
            CommandState.ACCEPTED,
            CommandState.REJECTED,
            CommandState.ANSWERED,
            CommandState.ERROR,
            CommandState.TIMEOUT,
            CommandState.FAILED,
        }
    ),
    **{state: frozenset() for state in FINISHED},
}


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        super().__init__(f"a command that is {current} cannot become {target}")
        self.current = current
        self.target = target


def transition(current: str, target: str) -> CommandState:
    """The state after moving from ``current`` to ``target``; refuses every move the machine
    does not have (including staying put)."""
    source, goal = CommandState(current), CommandState(target)
    if goal not in _MOVES[source]:
        raise IllegalTransition(source, goal)
    return goal


def sources(target: str) -> frozenset[CommandState]:
    """The states from which a command may move to ``target``."""
    goal = CommandState(target)
    return frozenset(state for state, moves in _MOVES.items() if goal in moves)


# --- What a CSMS may send -------------------------------------------------------------------------

_V16 = frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # Security extension
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)

_V201 = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ClearCache",
        "ClearChargingProfile",
        "ClearDisplayMessage",
        "ClearVariableMonitoring",
        "CostUpdated",
        "CustomerInformation",
        "DataTransfer",
        "DeleteCertificate",
        "GetBaseReport",
        "GetChargingProfiles",
        "GetCompositeSchedule",
        "GetDisplayMessages",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "GetMonitoringReport",
        "GetReport",
        "GetTransactionStatus",
        "GetVariables",
        "InstallCertificate",
        "PublishFirmware",
        "RequestStartTransaction",
        "RequestStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SetDisplayMessage",
        "SetMonitoringBase",
        "SetMonitoringLevel",
        "SetNetworkProfile",
        "SetVariableMonitoring",
        "SetVariables",
        "TriggerMessage",
        "UnlockConnector",
        "UnpublishFirmware",
        "UpdateFirmware",
    }
)

_V21 = _V201 | frozenset(
    {
        "AFRRSignal",
        "AdjustPeriodicEventStream",
        "ChangeTransactionTariff",
        "ClearDERControl",
        "ClearTariffs",
        "GetDERControl",
        "GetPeriodicEventStream",
        "GetTariffs",
        "NotifyAllowedEnergyTransfer",
        "NotifyWebPaymentStarted",
        "RequestBatterySwap",
        "SetDERControl",
        "SetDefaultTariff",
        "UpdateDynamicSchedule",
        "UsePriorityCharging",
    }
)

CSMS_ACTIONS: dict[str, frozenset[str]] = {"1.6": _V16, "2.0.1": _V201, "2.1": _V21}

# The actions that start a session from afar, and the ones that stop one.
REMOTE_START = {
    "1.6": "RemoteStartTransaction",
    "2.0.1": "RequestStartTransaction",
    "2.1": "RequestStartTransaction",
}


class UnknownAction(Exception):
    pass


def check_action(action: str, version: str) -> None:
    """Refuse an action a CSMS does not send in ``version`` (or a version we do not speak)."""
    actions = CSMS_ACTIONS.get(version)
    if actions is None:
        raise UnknownAction(f"OCPP {version or '(unknown)'} is not a version this CSMS speaks")
    if action not in actions:
        raise UnknownAction(
            f"{action!r} is not a command a CSMS sends in OCPP {version}; "
            f"one of: {', '.join(sorted(actions))}"
        )


# --- What an answer means ------------------------------------------------------------------------

# Statuses that say the charger does (or will do) what was asked.
ACCEPTING_STATUSES = frozenset(
    {"Accepted", "AcceptedCanceled", "Scheduled", "Unlocked", "RebootRequired", "Unpublished"}
)


def outcome(payload: dict[str, Any]) -> tuple[CommandState, str]:
    """The state a CALLRESULT puts its command in, and the status it carried ("" if none)."""
    status = payload.get("status")
    if not isinstance(status, str):
        return CommandState.ANSWERED, ""
    if status in ACCEPTING_STATUSES:
        return CommandState.ACCEPTED, status
    return CommandState.REJECTED, status
