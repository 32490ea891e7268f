"""How simulated chargers answer the commands a central system sends them, in OCPP 1.6 and 2.x.

They answer as a charger would: Reset reboots (running sessions end, then BootNotification);
a remote start starts a real session and a remote stop ends it; availability changes are
reported; configuration keys (1.6) and device model variables (2.x) live in a small store;
charging profiles are kept and a composite schedule is answered from them; diagnostics, logs and
firmware updates are accepted and followed by their status notifications; reservations and the
local authorization list are kept. Anything else gets a NotSupported CALLERROR.

An answer goes out at once; what follows it (a session, status notifications) runs as its own
task, because the charger's reader must keep reading the answers to its own CALLs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FollowUp = Callable[[], Awaitable[None]] | None
VOLTS = 230.0
PHASES = 3


def composite_periods(
    schedules: list[list[tuple[float, float]]], duration: int
) -> list[tuple[int, float]]:
    """The lowest limit of all schedules at every moment of ``[0, duration)``, as periods.

    Each schedule is a list of (startPeriod seconds, limit), relative to the same start; a
    schedule limits nothing before its first period.
    """
    starts = sorted(
        {0, *(int(start) for periods in schedules for start, _ in periods if start < duration)}
    )
    composite: list[tuple[int, float]] = []
    for start in starts:
        limits = []
        for periods in schedules:
            current = [limit for begin, limit in sorted(periods) if begin <= start]
            if current:
                limits.append(current[-1])
        if limits and (not composite or composite[-1][1] != min(limits)):
            composite.append((start, min(limits)))
    return composite


def convert_limit(limit: float, unit: str, wanted: str) -> float:
    if unit == wanted:
        return limit
    if wanted == "W":
        return round(limit * VOLTS * PHASES, 1)
    return round(limit / (VOLTS * PHASES), 1)


@dataclass
class Profile:
    """A charging profile as stored: where, purpose, stack level, unit and periods."""

    id: int
    where: int  # connector (1.6) or EVSE (2.x); 0: the whole charger
    purpose: str
    stack_level: int
    unit: str
    periods: list[tuple[float, float]] = field(default_factory=list)


class ChargerState:
    """What a simulated charger keeps between commands."""

    def __init__(self, connectors: int) -> None:
        self.profiles: dict[int, Profile] = {}
        self.reservations: dict[int, int] = {}  # reservation id -> connector (EVSE)
        self.local_list_version = 0
        self.local_list: dict[str, dict[str, Any]] = {}
        self.unavailable: set[int] = set()
        self.connectors = connectors


class CommandAnswers:
    """Shared by both versions: the dispatch from a CALL to its answer and follow-up."""

    # The class whose answer_<Action> methods this charger answers with.
    answer_mixin: type[CommandAnswers]
    ws: Any
    config: Any
    state: ChargerState
    busy: set[int]
    stop_events: dict[int, asyncio.Event]
    stop_reasons: dict[int, str]
    _follow_ups: set[asyncio.Task[None]]

    # What the simulated charger itself provides.
    identity: str

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def boot(self) -> str:
        raise NotImplementedError

    async def status(self, connector: int, status: str, error_code: str = "") -> None:
        raise NotImplementedError

    async def report_statuses(self) -> None:
        raise NotImplementedError

    async def session(
        self,
        connector: int,
        id_tag: str | None = None,
        *,
        remote: bool = False,
        remote_start_id: int | None = None,
    ) -> None:
        raise NotImplementedError

    def meter_values(
        self, connector: int, transaction_id: int | None, power_w: float
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def _answer(self, message_id: str, action: str, payload: dict[str, Any]) -> None:
        handler = getattr(self.answer_mixin, f"answer_{action}", None)
        if handler is None:
            await self.ws.send(
                json.dumps(
                    [4, message_id, "NotSupported", f"simulator does not support {action}", {}]
                )
            )
            return
        answer, follow_up = handler(self, payload)
        await self.ws.send(json.dumps([3, message_id, answer]))
        if follow_up is not None:
            task = asyncio.get_running_loop().create_task(self._follow(action, follow_up))
            self._follow_ups.add(task)
            task.add_done_callback(self._follow_ups.discard)

    async def _follow(self, action: str, follow_up: Callable[[], Awaitable[None]]) -> None:
        try:
            await follow_up()
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:  # the connection may close mid-way; the simulator carries on
            return

    def _free(self, where: int) -> bool:
        return (
            where not in self.busy
            and where not in self.state.unavailable
            and where not in self.state.reservations.values()
        )

    def _stop(self, where: int, reason: str) -> None:
        self.stop_reasons[where] = reason
        self.stop_events.setdefault(where, asyncio.Event()).set()

    async def _sessions_ended(self) -> None:
        for _ in range(600):
            if not self.busy:
                return
            await asyncio.sleep(0.05)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- OCPP 1.6 -------------------------------------------------------------------------------------


class Answers16(CommandAnswers):
    transactions: dict[int, int]
    heartbeat_interval: float

    def configuration(self) -> dict[str, tuple[str, bool]]:
        """The configuration keys: key -> (value, read-only)."""
        store = getattr(self, "_configuration", None)
        if store is None:
            store = {
                "HeartbeatInterval": (str(int(self.heartbeat_interval)), False),
                "MeterValueSampleInterval": (str(int(self.config.meter_interval)), False),
                "NumberOfConnectors": (str(self.config.connectors), True),
                "AuthorizeRemoteTxRequests": ("false", False),
                "ConnectionTimeOut": ("60", False),
                "LocalAuthListEnabled": ("true", False),
                "ChargeProfileMaxStackLevel": ("10", True),
            }
            self._configuration = store
        return store

    def _connector_ok(self, connector: int) -> bool:
        return 1 <= connector <= self.config.connectors

    async def _status(self, connector: int, status: str) -> None:
        await self.status(connector, status)

    # Core

    def answer_Reset(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        reason = "HardReset" if payload["type"] == "Hard" else "SoftReset"

        async def reboot() -> None:
            for connector in list(self.busy):
                self._stop(connector, reason)
            await self._sessions_ended()
            await self.boot()
            await self.report_statuses()

        return {"status": "Accepted"}, reboot

    def answer_UnlockConnector(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector = payload["connectorId"]
        if not self._connector_ok(connector):
            return {"status": "NotSupported"}, None
        if connector in self.busy:
            self._stop(connector, "UnlockCommand")
        return {"status": "Unlocked"}, None

    def answer_RemoteStartTransaction(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        connector = payload.get("connectorId")
        if connector is None:
            connector = next(
                (c for c in range(1, self.config.connectors + 1) if self._free(c)), None
            )
        if connector is None or not self._connector_ok(connector) or not self._free(connector):
            return {"status": "Rejected"}, None
        id_tag = payload["idTag"]
        self.busy.add(connector)  # taken now, so that a second request is refused

        async def start() -> None:
            await self.session(connector, id_tag, remote=True)

        return {"status": "Accepted"}, start

    def answer_RemoteStopTransaction(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        connector = next(
            (c for c, tx in self.transactions.items() if tx == payload["transactionId"]), None
        )
        if connector is None:
            return {"status": "Rejected"}, None
        self._stop(connector, "Remote")
        return {"status": "Accepted"}, None

    def answer_ChangeAvailability(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector, operative = payload["connectorId"], payload["type"] == "Operative"
        if connector != 0 and not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        targets = list(range(1, self.config.connectors + 1)) if connector == 0 else [connector]
        scheduled = any(c in self.busy for c in targets) and not operative
        for target in targets:
            (self.state.unavailable.discard if operative else self.state.unavailable.add)(target)

        async def report() -> None:
            for target in targets:
                if target not in self.busy:
                    await self._status(target, "Available" if operative else "Unavailable")

        return {"status": "Scheduled" if scheduled else "Accepted"}, report

    def answer_ChangeConfiguration(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        key, value = payload["key"], payload["value"]
        store = self.configuration()
        if key not in store:
            return {"status": "NotSupported"}, None
        if store[key][1]:
            return {"status": "Rejected"}, None
        if key in ("HeartbeatInterval", "MeterValueSampleInterval"):
            if not value.isdigit() or int(value) < 1:
                return {"status": "Rejected"}, None
            if key == "HeartbeatInterval":
                self.heartbeat_interval = float(value)
            else:
                self.config.meter_interval = float(value)
        store[key] = (value, False)
        return {"status": "Accepted"}, None

    def answer_GetConfiguration(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        store = self.configuration()
        wanted = payload.get("key") or list(store)
        known = [
            {"key": key, "readonly": store[key][1], "value": store[key][0]}
            for key in wanted
            if key in store
        ]
        unknown = [key for key in wanted if key not in store]
        answer: dict[str, Any] = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer, None

    def answer_ClearCache(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        return {"status": "Accepted"}, None

    def answer_DataTransfer(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        if payload["vendorId"] != self.config.vendor:
            return {"status": "UnknownVendorId"}, None
        answer: dict[str, Any] = {"status": "Accepted"}
        if "data" in payload:
            answer["data"] = payload["data"]
        return answer, None

    def answer_TriggerMessage(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        requested = payload["requestedMessage"]
        connector = payload.get("connectorId")

        async def send() -> None:
            if requested == "Heartbeat":
                await self.call("Heartbeat", {})
            elif requested == "BootNotification":
                await self.boot()
            elif requested == "StatusNotification":
                for c in [connector] if connector else range(1, self.config.connectors + 1):
                    await self._status(c, self._shown(c))
            elif requested == "MeterValues":
                for c in [connector] if connector else range(1, self.config.connectors + 1):
                    await self.call(
                        "MeterValues", self.meter_values(c, self.transactions.get(c), 0.0)
                    )
            elif requested == "FirmwareStatusNotification":
                await self.call("FirmwareStatusNotification", {"status": "Idle"})
            elif requested == "DiagnosticsStatusNotification":
                await self.call("DiagnosticsStatusNotification", {"status": "Idle"})

        if connector is not None and not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, send

    def _shown(self, connector: int) -> str:
        if connector in self.transactions:
            return "Charging"
        if connector in self.state.unavailable:
            return "Unavailable"
        if connector in self.state.reservations.values():
            return "Reserved"
        return "Available"

    # Smart charging

    def answer_SetChargingProfile(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector, profile = payload["connectorId"], payload["csChargingProfiles"]
        if connector != 0 and not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        if profile["chargingProfilePurpose"] == "TxProfile" and connector not in self.transactions:
            return {"status": "Rejected"}, None
        schedule = profile["chargingSchedule"]
        self.state.profiles[profile["chargingProfileId"]] = Profile(
            id=profile["chargingProfileId"],
            where=connector,
            purpose=profile["chargingProfilePurpose"],
            stack_level=profile["stackLevel"],
            unit=schedule["chargingRateUnit"],
            periods=[
                (p["startPeriod"], float(p["limit"])) for p in schedule["chargingSchedulePeriod"]
            ],
        )
        return {"status": "Accepted"}, None

    def answer_ClearChargingProfile(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        def matches(p: Profile) -> bool:
            if "id" in payload:
                return p.id == payload["id"]
            return (
                payload.get("connectorId", p.where) == p.where
                and payload.get("chargingProfilePurpose", p.purpose) == p.purpose
                and payload.get("stackLevel", p.stack_level) == p.stack_level
            )

        cleared = [p.id for p in self.state.profiles.values() if matches(p)]
        for profile_id in cleared:
            del self.state.profiles[profile_id]
        return {"status": "Accepted" if cleared else "Unknown"}, None

    def answer_GetCompositeSchedule(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        connector, duration = payload["connectorId"], payload["duration"]
        unit = payload.get("chargingRateUnit", "W")
        periods = _composite(self.state.profiles.values(), {0, connector}, duration, unit)
        if (connector != 0 and not self._connector_ok(connector)) or not periods:
            return {"status": "Rejected"}, None
        return {
            "status": "Accepted",
            "connectorId": connector,
            "scheduleStart": _now(),
            "chargingSchedule": {
                "duration": duration,
                "startSchedule": _now(),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [
                    {"startPeriod": s, "limit": limit} for s, limit in periods
                ],
            },
        }, None

    # Firmware, diagnostics, logs

    def answer_GetDiagnostics(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        name = f"diagnostics-{self.identity}.log"

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                await self.call("DiagnosticsStatusNotification", {"status": status})

        return {"fileName": name}, upload

    def answer_UpdateFirmware(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        async def update() -> None:
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await self.call("FirmwareStatusNotification", {"status": status})

        return {}, update

    def answer_GetLog(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                await self.call(
                    "LogStatusNotification", {"status": status, "requestId": request_id}
                )

        return {"status": "Accepted", "filename": f"{payload['logType']}-{request_id}.log"}, upload

    # Reservations and the local list

    def answer_ReserveNow(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector = payload["connectorId"]
        if not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        if connector in self.state.unavailable:
            return {"status": "Unavailable"}, None
        if (
            not self._free(connector)
            and self.state.reservations.get(payload["reservationId"]) != connector
        ):
            return {"status": "Occupied"}, None
        self.state.reservations[payload["reservationId"]] = connector
        return {"status": "Accepted"}, lambda: self._status(connector, "Reserved")

    def answer_CancelReservation(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector = self.state.reservations.pop(payload["reservationId"], None)
        if connector is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, lambda: self._status(connector, self._shown(connector))

    def answer_SendLocalList(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        entries = {
            item["idTag"]: item.get("idTagInfo", {})
            for item in payload.get("localAuthorizationList") or []
        }
        return _local_list(self.state, payload["listVersion"], payload["updateType"], entries), None

    def answer_GetLocalListVersion(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        return {"listVersion": self.state.local_list_version}, None


def _composite(profiles: Any, where: set[int], duration: int, unit: str) -> list[tuple[int, float]]:
    """Per purpose the highest stack level wins; the composite is the lowest of the winners."""
    chosen: dict[str, Profile] = {}
    for profile in profiles:
        if profile.where in where:
            best = chosen.get(profile.purpose)
            if best is None or (profile.stack_level, profile.where) > (
                best.stack_level,
                best.where,
            ):
                chosen[profile.purpose] = profile
    schedules = [
        [(start, convert_limit(limit, p.unit, unit)) for start, limit in p.periods]
        for p in chosen.values()
    ]
    return composite_periods(schedules, duration)


def _local_list(
    state: ChargerState, version: int, update: str, entries: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    if update == "Differential" and version <= state.local_list_version:
        return {"status": "VersionMismatch"}
    if update == "Full":
        state.local_list = {}
    for token, info in entries.items():
        if info:
            state.local_list[token] = info
        else:
            state.local_list.pop(token, None)
    state.local_list_version = version
    return {"status": "Accepted"}


# --- OCPP 2.0.1 and 2.1 ---------------------------------------------------------------------------


class Answers201(CommandAnswers):
    transaction_ids: dict[int, str]
    heartbeat_interval: float

    def variables(self) -> dict[tuple[str, str], tuple[str, bool]]:
        """The device model variables: (component, variable) -> (value, read-only)."""
        store = getattr(self, "_variables", None)
        if store is None:
            store = {
                ("OCPPCommCtrlr", "HeartbeatInterval"): (str(int(self.heartbeat_interval)), False),
                ("SampledDataCtrlr", "TxUpdatedInterval"): (
                    str(int(self.config.meter_interval)),
                    False,
                ),
                ("AuthCtrlr", "AuthorizeRemoteStart"): ("false", False),
                ("TxCtrlr", "EVConnectionTimeOut"): ("60", False),
                ("ChargingStation", "Model"): (self.config.model, True),
                ("ChargingStation", "VendorName"): (self.config.vendor, True),
                ("LocalAuthListCtrlr", "Enabled"): ("true", False),
            }
            self._variables = store
        return store

    def _evse_ok(self, evse: int) -> bool:
        return 1 <= evse <= self.config.connectors

    async def _status(self, evse: int, status: str) -> None:
        await self.status(evse, status)

    def _shown(self, evse: int) -> str:
        if evse in self.transaction_ids:
            return "Occupied"
        if evse in self.state.unavailable:
            return "Unavailable"
        if evse in self.state.reservations.values():
            return "Reserved"
        return "Available"

    def answer_Reset(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        when_idle = payload["type"] == "OnIdle" and bool(self.busy)

        async def reboot() -> None:
            if when_idle:
                await self._sessions_ended()
            for evse in list(self.busy):
                self._stop(evse, "ImmediateReset")
            await self._sessions_ended()
            await self.boot()
            await self.report_statuses()

        return {"status": "Scheduled" if when_idle else "Accepted"}, reboot

    def answer_UnlockConnector(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        if not self._evse_ok(payload["evseId"]) or payload["connectorId"] != 1:
            return {"status": "UnknownConnector"}, None
        if payload["evseId"] in self.busy:
            return {"status": "OngoingAuthorizedTransaction"}, None
        return {"status": "Unlocked"}, None

    def answer_RequestStartTransaction(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        evse = payload.get("evseId")
        if evse is None:
            evse = next((e for e in range(1, self.config.connectors + 1) if self._free(e)), None)
        if evse is None or not self._evse_ok(evse) or not self._free(evse):
            return {"status": "Rejected"}, None
        self.busy.add(evse)
        id_tag, remote_start_id = payload["idToken"]["idToken"], payload["remoteStartId"]

        async def start() -> None:
            await self.session(evse, id_tag, remote=True, remote_start_id=remote_start_id)

        return {"status": "Accepted"}, start

    def answer_RequestStopTransaction(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        evse = next(
            (e for e, tx in self.transaction_ids.items() if tx == payload["transactionId"]), None
        )
        if evse is None:
            return {"status": "Rejected"}, None
        self._stop(evse, "Remote")
        return {"status": "Accepted"}, None

    def answer_GetTransactionStatus(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        answer: dict[str, Any] = {"messagesInQueue": False}
        if "transactionId" in payload:
            answer["ongoingIndicator"] = payload["transactionId"] in self.transaction_ids.values()
        return answer, None

    def answer_ChangeAvailability(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse = (payload.get("evse") or {}).get("id", 0)
        operative = payload["operationalStatus"] == "Operative"
        if evse != 0 and not self._evse_ok(evse):
            return {"status": "Rejected"}, None
        targets = list(range(1, self.config.connectors + 1)) if evse == 0 else [evse]
        scheduled = any(e in self.busy for e in targets) and not operative
        for target in targets:
            (self.state.unavailable.discard if operative else self.state.unavailable.add)(target)

        async def report() -> None:
            for target in targets:
                if target not in self.busy:
                    await self._status(target, "Available" if operative else "Unavailable")

        return {"status": "Scheduled" if scheduled else "Accepted"}, report

    def answer_GetVariables(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        store = self.variables()
        results = []
        for item in payload["getVariableData"]:
            key = (item["component"]["name"], item["variable"]["name"])
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if "attributeType" in item:
                result["attributeType"] = item["attributeType"]
            if key in store and item.get("attributeType", "Actual") == "Actual":
                result.update(attributeStatus="Accepted", attributeValue=store[key][0])
            elif key in store:
                result["attributeStatus"] = "NotSupportedAttributeType"
            elif any(component == key[0] for component, _ in store):
                result["attributeStatus"] = "UnknownVariable"
            else:
                result["attributeStatus"] = "UnknownComponent"
            results.append(result)
        return {"getVariableResult": results}, None

    def answer_SetVariables(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        store = self.variables()
        results = []
        for item in payload["setVariableData"]:
            key = (item["component"]["name"], item["variable"]["name"])
            value = item["attributeValue"]
            if key not in store:
                known_component = any(component == key[0] for component, _ in store)
                status = "UnknownVariable" if known_component else "UnknownComponent"
            elif store[key][1] or (
                key[1] in ("HeartbeatInterval", "TxUpdatedInterval")
                and (not value.isdigit() or int(value) < 1)
            ):
                status = "Rejected"
            else:
                status = "Accepted"
                store[key] = (value, False)
                if key[1] == "HeartbeatInterval":
                    self.heartbeat_interval = float(value)
                elif key[1] == "TxUpdatedInterval":
                    self.config.meter_interval = float(value)
            results.append(
                {
                    "attributeStatus": status,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return {"setVariableResult": results}, None

    def answer_TriggerMessage(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        requested = payload["requestedMessage"]
        evse = (payload.get("evse") or {}).get("id")
        supported = {
            "Heartbeat",
            "BootNotification",
            "StatusNotification",
            "FirmwareStatusNotification",
            "LogStatusNotification",
        }
        if requested not in supported:
            return {"status": "NotImplemented"}, None
        if evse is not None and not self._evse_ok(evse):
            return {"status": "Rejected"}, None

        async def send() -> None:
            if requested == "Heartbeat":
                await self.call("Heartbeat", {})
            elif requested == "BootNotification":
                await self.boot()
            elif requested == "StatusNotification":
                for e in [evse] if evse else range(1, self.config.connectors + 1):
                    await self._status(e, self._shown(e))
            elif requested == "FirmwareStatusNotification":
                await self.call("FirmwareStatusNotification", {"status": "Idle"})
            else:
                await self.call("LogStatusNotification", {"status": "Idle"})

        return {"status": "Accepted"}, send

    def answer_ClearCache(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        return {"status": "Accepted"}, None

    def answer_DataTransfer(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        if payload["vendorId"] != self.config.vendor:
            return {"status": "UnknownVendorId"}, None
        answer: dict[str, Any] = {"status": "Accepted"}
        if "data" in payload:
            answer["data"] = payload["data"]
        return answer, None

    def answer_SetChargingProfile(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse, profile = payload["evseId"], payload["chargingProfile"]
        if evse != 0 and not self._evse_ok(evse):
            return {"status": "Rejected"}, None
        if profile["chargingProfilePurpose"] == "TxProfile" and evse not in self.transaction_ids:
            return {"status": "Rejected"}, None
        schedule = profile["chargingSchedule"][0]
        self.state.profiles[profile["id"]] = Profile(
            id=profile["id"],
            where=evse,
            purpose=profile["chargingProfilePurpose"],
            stack_level=profile["stackLevel"],
            unit=schedule["chargingRateUnit"],
            periods=[
                (p["startPeriod"], float(p["limit"])) for p in schedule["chargingSchedulePeriod"]
            ],
        )
        return {"status": "Accepted"}, None

    def answer_ClearChargingProfile(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        criteria = payload.get("chargingProfileCriteria") or {}

        def matches(p: Profile) -> bool:
            if "chargingProfileId" in payload:
                return p.id == payload["chargingProfileId"]
            return (
                criteria.get("evseId", p.where) == p.where
                and criteria.get("chargingProfilePurpose", p.purpose) == p.purpose
                and criteria.get("stackLevel", p.stack_level) == p.stack_level
            )

        cleared = [p.id for p in self.state.profiles.values() if matches(p)]
        for profile_id in cleared:
            del self.state.profiles[profile_id]
        return {"status": "Accepted" if cleared else "Unknown"}, None

    def answer_GetCompositeSchedule(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        evse, duration = payload["evseId"], payload["duration"]
        unit = payload.get("chargingRateUnit", "W")
        periods = _composite(self.state.profiles.values(), {0, evse}, duration, unit)
        if (evse != 0 and not self._evse_ok(evse)) or not periods:
            return {"status": "Rejected"}, None
        return {
            "status": "Accepted",
            "schedule": {
                "evseId": evse,
                "duration": duration,
                "scheduleStart": _now(),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [
                    {"startPeriod": s, "limit": limit} for s, limit in periods
                ],
            },
        }, None

    def answer_UpdateFirmware(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]

        async def update() -> None:
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await self.call(
                    "FirmwareStatusNotification", {"status": status, "requestId": request_id}
                )

        return {"status": "Accepted"}, update

    def answer_GetLog(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]

        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                await self.call(
                    "LogStatusNotification", {"status": status, "requestId": request_id}
                )

        return {"status": "Accepted", "filename": f"{payload['logType']}-{request_id}.log"}, upload

    def answer_ReserveNow(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse = payload.get("evseId") or next(
            (e for e in range(1, self.config.connectors + 1) if self._free(e)), None
        )
        if evse is None or not self._evse_ok(evse):
            return {"status": "Occupied" if evse is None else "Rejected"}, None
        if evse in self.state.unavailable:
            return {"status": "Unavailable"}, None
        if not self._free(evse) and self.state.reservations.get(payload["id"]) != evse:
            return {"status": "Occupied"}, None
        self.state.reservations[payload["id"]] = evse
        return {"status": "Accepted"}, lambda: self._status(evse, "Reserved")

    def answer_CancelReservation(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse = self.state.reservations.pop(payload["reservationId"], None)
        if evse is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, lambda: self._status(evse, self._shown(evse))

    def answer_SendLocalList(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        entries = {
            item["idToken"]["idToken"]: item.get("idTokenInfo", {})
            for item in payload.get("localAuthorizationList") or []
        }
        return _local_list(
            self.state, payload["versionNumber"], payload["updateType"], entries
        ), None

    def answer_GetLocalListVersion(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        return {"versionNumber": self.state.local_list_version}, None
