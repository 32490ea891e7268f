"""How simulated chargers answer the commands a central system sends them, in OCPP 1.6 and 2.x.

They answer as a charger would: Reset reboots (running sessions end, then BootNotification);
a remote start starts a real session and a remote stop ends it; availability changes are
reported; configuration keys (1.6) and device model variables (2.x) live in a small store;
charging profiles are kept, a composite schedule is answered from them and sessions draw no more
than it allows (the closed loop of load management); diagnostics, logs and
firmware updates are accepted and followed by their status notifications; reservations and the
local authorization list are kept. Anything else gets a NotSupported CALLERROR.

An answer goes out at once; what follows it (a session, status notifications) runs as its own
task, because the charger's reader must keep reading the answers to its own CALLs.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FollowUp = Callable[[], Awaitable[None]] | None
VOLTS = 230.0
PHASES = 3

# How a firmware update goes: the FirmwareStatusNotification statuses reported, in order.
# "install" reboots after installing and boots with the new version; 2.x reports
# InstallRebooting before the reboot and Installed after it.
FIRMWARE_UPDATES: dict[str, tuple[str, ...]] = {
    "": ("Downloading", "Downloaded", "Installing", "Installed"),
    "install": ("Downloading", "Downloaded", "Installing", "Installed"),
    "download-failed": ("Downloading", "DownloadFailed"),
    "install-failed": ("Downloading", "Downloaded", "Installing", "InstallationFailed"),
}
_IMAGE_SUFFIXES = (".tar.gz", ".bin", ".img", ".zip", ".tgz", ".fw", ".hex", ".pkg")


def firmware_version_of(location: str) -> str:
    """The version a simulated charger reports after installing the image at ``location``: the
    file name without its suffix (``https://fw.example.com/2.0.1.bin`` installs ``2.0.1``)."""
    name = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)][:50]
    return name[:50]


def upload(location: str, name: str, content: bytes, *, put: bool) -> None:
    """Send a file to an HTTP(S) upload location, as a charger does: a multipart POST (the
    common way of 1.6 GetDiagnostics) or a PUT of the bare file."""
    if put:
        request = urllib.request.Request(
            location.rstrip("/") + "/" + name,
            data=content,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
    else:
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            location,
            data=body,
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


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
    # When it arrived (monotonic seconds): its periods count from then.
    received: float = field(default_factory=time.monotonic)

    def limit_after(self, elapsed: float) -> float | None:
        """The limit of the period in force ``elapsed`` seconds after it arrived."""
        current = [limit for start, limit in sorted(self.periods) if start <= elapsed]
        return current[-1] if current else None


class ChargerState:
    """What a simulated charger keeps between commands."""

    def __init__(self, connectors: int) -> None:
        self.profiles: dict[int, Profile] = {}
        self.reservations: dict[int, int] = {}  # reservation id -> connector (EVSE)
        # reservation id -> (id token, when it lapses): who may use it, and until when.
        self.reservation_holders: dict[int, tuple[str, datetime]] = {}
        self.faulted: set[int] = set()
        self.local_list_version = 0
        self.local_list: dict[str, dict[str, Any]] = {}
        # Entries one SendLocalList may carry, and entries the list holds.
        self.local_list_per_message = 20
        self.local_list_max = 100
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
    # Set when a connector's limit may have changed: its session reports its new draw at once.
    wakes: dict[int, asyncio.Event]
    _follow_ups: set[asyncio.Task[None]]

    # What the simulated charger itself provides.
    identity: str
    firmware_version: str
    firmware_update: str
    upload_files: bool

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

    def limit_a(self, where: int) -> float | None:
        """The current per phase the profiles allow on a connector (EVSE) now, each profile's
        periods counted from its arrival; None: no limit."""
        now = time.monotonic()
        limits = [
            convert_limit(limit, profile.unit, "A")
            for profile in _chosen(self.state.profiles.values(), {0, where}).values()
            if (limit := profile.limit_after(now - profile.received)) is not None
        ]
        return min(limits) if limits else None

    def _limits_changed(self, where: int) -> None:
        for connector, wake in self.wakes.items():
            if where in (0, connector):
                wake.set()

    def _transaction_ended(self, where: int) -> None:
        """A transaction's profiles end with it."""
        for profile_id, profile in list(self.state.profiles.items()):
            if profile.purpose == "TxProfile" and profile.where == where:
                del self.state.profiles[profile_id]

    def _free(self, where: int, id_tag: str | None = None) -> bool:
        """Whether a session may start on a connector (EVSE): not busy, not unavailable, and
        not reserved, unless for ``id_tag``."""
        return (
            where not in self.busy
            and where not in self.state.unavailable
            and where not in self.state.faulted
            and all(
                held != where or self.state.reservation_holders.get(rid, ("",))[0] == id_tag
                for rid, held in self.state.reservations.items()
            )
        )

    def _reserved_for(self, id_tag: str) -> int | None:
        """The connector (EVSE) reserved for ``id_tag``, if any."""
        for rid, where in self.state.reservations.items():
            if self.state.reservation_holders.get(rid, ("",))[0] == id_tag:
                return where
        return None

    def take_reservation(self, where: int, id_tag: str) -> int | None:
        """A session of ``id_tag`` starts on ``where``: the reservation it uses (now gone)."""
        for rid, held in list(self.state.reservations.items()):
            if held == where and self.state.reservation_holders.get(rid, ("",))[0] == id_tag:
                del self.state.reservations[rid]
                self.state.reservation_holders.pop(rid, None)
                return rid
        return None

    def _reserve(
        self, reservation_id: int, where: int, id_tag: str, expiry: str
    ) -> Callable[[], Awaitable[None]]:
        """Hold ``where`` for ``id_tag``; the follow-up reports it Reserved and, when its time
        passes unused, lets it lapse."""
        expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        self.state.reservations[reservation_id] = where
        self.state.reservation_holders[reservation_id] = (id_tag, expires)

        async def hold() -> None:
            await self.status(where, "Reserved")
            await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()))
            holder = self.state.reservation_holders.get(reservation_id)
            if holder is None or holder[1] != expires:
                return  # used, cancelled or replaced meanwhile
            del self.state.reservations[reservation_id]
            del self.state.reservation_holders[reservation_id]
            await self.reservation_lapsed(reservation_id, where)

        return hold

    async def reservation_lapsed(self, reservation_id: int, where: int) -> None:
        raise NotImplementedError

    def _stop(self, where: int, reason: str) -> None:
        self.stop_reasons[where] = reason
        self.stop_events.setdefault(where, asyncio.Event()).set()

    async def _update_firmware(
        self, location: str, report: Callable[[str], Awaitable[Any]]
    ) -> None:
        """Report the update's statuses (as ``firmware_update`` says it goes); "install" reboots
        and boots with the new version, 2.x saying InstallRebooting first and Installed after."""
        steps = FIRMWARE_UPDATES.get(self.firmware_update, FIRMWARE_UPDATES[""])
        if self.firmware_update != "install":
            for status in steps:
                await report(status)
            return
        two_x = self.answer_mixin is not Answers16
        for status in steps[:-1]:
            await report(status)
        if not two_x:
            await report(steps[-1])
        else:
            await report("InstallRebooting")
        for where in list(self.busy):
            self._stop(where, "Reboot" if not two_x else "ImmediateReset")
        await self._sessions_ended()
        self.firmware_version = firmware_version_of(location)
        await self.boot()
        await self.report_statuses()
        if two_x:
            await report(steps[-1])

    async def _upload(self, location: str, name: str, *, put: bool) -> bool:
        """Upload a small file when told to and the location is HTTP(S); True when it went (or
        nothing was to be sent)."""
        if not self.upload_files or not location.startswith(("http://", "https://")):
            return True
        content = f"Simulated {name} of {self.identity} at {_now()}\n".encode()
        try:
            await asyncio.to_thread(upload, location, name, content, put=put)
        except OSError:
            return False
        return True

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
                "LocalAuthListMaxLength": (str(self.state.local_list_max), True),
                "SendLocalListMaxLength": (str(self.state.local_list_per_message), True),
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
        id_tag = payload["idTag"]
        connector = payload.get("connectorId")
        if connector is None:
            connector = self._reserved_for(id_tag) or next(
                (c for c in range(1, self.config.connectors + 1) if self._free(c)), None
            )
        if (
            connector is None
            or not self._connector_ok(connector)
            or not self._free(connector, id_tag)
        ):
            return {"status": "Rejected"}, None
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
        if connector in self.state.faulted:
            return "Faulted"
        if connector in self.state.reservations.values():
            return "Reserved"
        return "Available"

    # Smart charging

    def answer_SetChargingProfile(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector, profile = payload["connectorId"], payload["csChargingProfiles"]
        if connector != 0 and not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        # A session that is starting takes its profile before it knows its transaction id.
        if (
            profile["chargingProfilePurpose"] == "TxProfile"
            and connector not in self.transactions
            and connector not in self.busy
        ):
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
        self._limits_changed(connector)
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
        if cleared:
            self._limits_changed(0)
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

        async def send_file() -> None:
            await self.call("DiagnosticsStatusNotification", {"status": "Uploading"})
            sent = await self._upload(payload["location"], name, put=False)
            await self.call(
                "DiagnosticsStatusNotification", {"status": "Uploaded" if sent else "UploadFailed"}
            )

        return {"fileName": name}, send_file

    def answer_UpdateFirmware(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        async def report(status: str) -> None:
            await self.call("FirmwareStatusNotification", {"status": status})

        async def update() -> None:
            await self._update_firmware(payload["location"], report)

        return {}, update

    def answer_SignedUpdateFirmware(
        self, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]

        async def report(status: str) -> None:
            await self.call(
                "SignedFirmwareStatusNotification", {"status": status, "requestId": request_id}
            )

        async def update() -> None:
            await self._update_firmware(payload["firmware"]["location"], report)

        return {"status": "Accepted"}, update

    def answer_GetLog(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]
        name = f"{payload['logType']}-{request_id}.log"

        async def send_file() -> None:
            await self.call(
                "LogStatusNotification", {"status": "Uploading", "requestId": request_id}
            )
            sent = await self._upload(payload["log"]["remoteLocation"], name, put=True)
            await self.call(
                "LogStatusNotification",
                {"status": "Uploaded" if sent else "UploadFailure", "requestId": request_id},
            )

        return {"status": "Accepted", "filename": name}, send_file

    # Reservations and the local list

    def answer_ReserveNow(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector, reservation_id = payload["connectorId"], payload["reservationId"]
        if not self._connector_ok(connector):
            return {"status": "Rejected"}, None
        if connector in self.state.faulted:
            return {"status": "Faulted"}, None
        if connector in self.state.unavailable:
            return {"status": "Unavailable"}, None
        if not self._free(connector) and self.state.reservations.get(reservation_id) != connector:
            return {"status": "Occupied"}, None
        hold = self._reserve(reservation_id, connector, payload["idTag"], payload["expiryDate"])
        return {"status": "Accepted"}, hold

    async def reservation_lapsed(self, reservation_id: int, where: int) -> None:
        # A 1.6 charger reports nothing but the connector's status.
        await self._status(where, self._shown(where))

    def answer_CancelReservation(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        connector = self.state.reservations.pop(payload["reservationId"], None)
        self.state.reservation_holders.pop(payload["reservationId"], None)
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
    """Per purpose the highest stack level wins; the composite is the lowest of the winners, where
    a transaction's own profile replaces the default one."""
    chosen = _chosen(profiles, where)
    schedules = [
        [(start, convert_limit(limit, p.unit, unit)) for start, limit in p.periods]
        for p in chosen.values()
    ]
    return composite_periods(schedules, duration)


def _chosen(profiles: Any, where: set[int]) -> dict[str, Profile]:
    chosen: dict[str, Profile] = {}
    for profile in profiles:
        if profile.where in where:
            best = chosen.get(profile.purpose)
            if best is None or (profile.stack_level, profile.where) > (
                best.stack_level,
                best.where,
            ):
                chosen[profile.purpose] = profile
    if "TxProfile" in chosen:
        chosen.pop("TxDefaultProfile", None)
    return chosen


def _local_list(
    state: ChargerState, version: int, update: str, entries: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Apply a SendLocalList: a Full replaces the list, a Differential (whose version must be
    higher than the list's) adds, changes and (an entry with no info) deletes; an update with more
    entries than one message may carry, or that leaves more than the list holds, fails."""
    if update == "Differential" and version <= state.local_list_version:
        return {"status": "VersionMismatch"}
    if len(entries) > state.local_list_per_message:
        return {"status": "Failed"}
    result = {} if update == "Full" else dict(state.local_list)
    for token, info in entries.items():
        if info:
            result[token] = info
        else:
            result.pop(token, None)
    if len(result) > state.local_list_max:
        return {"status": "Failed"}
    state.local_list = result
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
                ("LocalAuthListCtrlr", "ItemsPerMessage"): (
                    str(self.state.local_list_per_message),
                    True,
                ),
                ("LocalAuthListCtrlr", "Entries"): ("0", True),
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
        if evse in self.state.faulted:
            return "Faulted"
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
        id_tag, remote_start_id = payload["idToken"]["idToken"], payload["remoteStartId"]
        evse = payload.get("evseId")
        if evse is None:
            evse = self._reserved_for(id_tag) or next(
                (e for e in range(1, self.config.connectors + 1) if self._free(e)), None
            )
        if evse is None or not self._evse_ok(evse) or not self._free(evse, id_tag):
            return {"status": "Rejected"}, None
        self.busy.add(evse)

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
            if key == ("LocalAuthListCtrlr", "Entries"):
                # How many entries the list holds, and (MaxSet) how many it can hold.
                store[key] = (str(len(self.state.local_list)), True)
                if item.get("attributeType") == "MaxSet":
                    result.update(
                        attributeStatus="Accepted", attributeValue=str(self.state.local_list_max)
                    )
                    results.append(result)
                    continue
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
        self._limits_changed(evse)
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
        if cleared:
            self._limits_changed(0)
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

        async def report(status: str) -> None:
            await self.call(
                "FirmwareStatusNotification", {"status": status, "requestId": request_id}
            )

        async def update() -> None:
            await self._update_firmware(payload["firmware"]["location"], report)

        return {"status": "Accepted"}, update

    def answer_GetLog(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        request_id = payload["requestId"]
        name = f"{payload['logType']}-{request_id}.log"

        async def send_file() -> None:
            await self.call(
                "LogStatusNotification", {"status": "Uploading", "requestId": request_id}
            )
            sent = await self._upload(payload["log"]["remoteLocation"], name, put=True)
            await self.call(
                "LogStatusNotification",
                {"status": "Uploaded" if sent else "UploadFailure", "requestId": request_id},
            )

        return {"status": "Accepted", "filename": name}, send_file

    def answer_ReserveNow(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse = payload.get("evseId") or next(
            (e for e in range(1, self.config.connectors + 1) if self._free(e)), None
        )
        if evse is None or not self._evse_ok(evse):
            return {"status": "Occupied" if evse is None else "Rejected"}, None
        if evse in self.state.faulted:
            return {"status": "Faulted"}, None
        if evse in self.state.unavailable:
            return {"status": "Unavailable"}, None
        if not self._free(evse) and self.state.reservations.get(payload["id"]) != evse:
            return {"status": "Occupied"}, None
        id_tag = payload["idToken"]["idToken"]
        return {"status": "Accepted"}, self._reserve(
            payload["id"], evse, id_tag, payload["expiryDateTime"]
        )

    async def reservation_lapsed(self, reservation_id: int, where: int) -> None:
        await self.call(
            "ReservationStatusUpdate",
            {"reservationId": reservation_id, "reservationUpdateStatus": "Expired"},
        )
        await self._status(where, self._shown(where))

    def answer_CancelReservation(self, payload: dict[str, Any]) -> tuple[dict[str, Any], FollowUp]:
        evse = self.state.reservations.pop(payload["reservationId"], None)
        self.state.reservation_holders.pop(payload["reservationId"], None)
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
