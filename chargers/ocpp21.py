"""OCPP 2.1 handlers: every charger-initiated message, validated against the 2.1 schemas.

Messages 2.1 shares with 2.0.1 map to the normalized model through the 2.0.1 handlers (answered
with 2.1 ``call_result`` types); the messages new in 2.1 are recorded and answered. 2.1 also adds
two frame types: SEND (6), a message that gets no answer, and CALLRESULTERROR (5), the answer
to a CALLRESULT that was not valid. ``Dispatcher21`` handles both.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ocpp.routing import on
from ocpp.v21 import call_result
from ocpp.v21.enums import Action

from . import normalize, protocol
from .dispatch import Dispatcher, Outcome
from .models import ChargerEvent
from .ocpp201 import NO_CA_INFO, ChargePoint201, _request_id, snake

logger = logging.getLogger(__name__)

KNOWN_ACTIONS = frozenset(action.value for action in Action) | {"NotifyPeriodicEventStream"}

CALLRESULTERROR, SEND = 5, 6
SEND_ACTIONS = frozenset({"NotifyPeriodicEventStream"})
_TYPE_ID = re.compile(r"\s*\[\s*(\d+)")


class Dispatcher21(Dispatcher):
    """The 2.x dispatcher, plus 2.1's SEND and CALLRESULTERROR frames."""

    async def handle_text(self, text: str) -> Outcome:
        match = _TYPE_ID.match(text)
        if match is None or int(match.group(1)) not in (CALLRESULTERROR, SEND):
            return await super().handle_text(text)
        try:
            frame = json.loads(text)
        except ValueError:
            return await super().handle_text(text)  # answers the FormatViolation
        type_id = frame[0]
        message_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else "-1"
        if type_id == CALLRESULTERROR:
            action = self.pending.pop(message_id, "")
            logger.info(
                "charger rejected our answer to %s: %s",
                message_id,
                frame[2:4] if len(frame) > 3 else frame,
            )
            return Outcome(None, CALLRESULTERROR, message_id, action)
        action = frame[2] if len(frame) == 4 and isinstance(frame[2], str) else ""
        # A SEND never gets an answer, not even an error: problems are logged and journaled.
        try:
            if not action or not isinstance(frame[3], dict):
                raise protocol.FrameError("FormatViolation", "a SEND has 4 elements", message_id)
            await self._run_send(protocol.Call(message_id, action, frame[3]))
        except protocol.FrameError as exc:
            logger.info("SEND %s %s refused: %s %s", action, message_id, exc.code, exc.description)
        return Outcome(None, SEND, message_id, action)

    async def _run_handler(self, call: protocol.Call) -> str:
        if call.action in SEND_ACTIONS:
            raise protocol.FrameError(
                "NotSupported",
                f"{call.action} is sent as a SEND (6), not as a CALL",
                call.message_id,
            )
        return await super()._run_handler(call)

    async def _run_send(self, message: protocol.Call) -> None:
        handlers = self.route_map.get(message.action)
        if handlers is None or "_on_action" not in handlers:
            raise protocol.FrameError("NotImplemented", f"unknown SEND action {message.action!r}")
        if not self.handlers.accepts_requests():
            raise protocol.FrameError("SecurityError", "registration is not Accepted")
        protocol.validate(SEND, message.action, message.payload, self.version, message.message_id)
        self.handlers.prepare_call(message)
        result = handlers["_on_action"](self.handlers)
        if hasattr(result, "__await__"):
            await result


class ChargePoint21(ChargePoint201):
    """The CSMS side of one 2.1 charger connection."""

    version = "2.1"
    results: Any = call_result
    dispatcher_class = Dispatcher21
    ev_charging_needs_status = "NoChargingProfile"

    @on(Action.battery_swap)
    async def on_battery_swap(self, **_: Any) -> Any:
        id_token = self.payload["idToken"]
        await self._record(
            ChargerEvent.Kind.BATTERY_SWAP,
            status=self.payload["eventType"],
            request_id=_request_id(self.payload["requestId"]),
            detail={
                "id_token": id_token.get("idToken", ""),
                "id_token_type": id_token.get("type", ""),
                "battery_data": self.payload["batteryData"],
            },
        )
        return self.results.BatterySwap()

    # --- Periodic event streams ----------------------------------------------------------------

    @on(Action.open_periodic_event_stream)
    async def on_open_periodic_event_stream(self, **_: Any) -> Any:
        stream = self.payload["constantStreamData"]
        await self._record(
            ChargerEvent.Kind.PERIODIC_EVENT_STREAM,
            status="Opened",
            request_id=_request_id(stream.get("id"), "id"),
            detail=stream,
        )
        return self.results.OpenPeriodicEventStream(status="Accepted")

    @on(Action.close_periodic_event_stream)
    async def on_close_periodic_event_stream(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.PERIODIC_EVENT_STREAM,
            status="Closed",
            request_id=_request_id(self.payload["id"], "id"),
        )
        return self.results.ClosePeriodicEventStream()

    @on("NotifyPeriodicEventStream")
    def on_notify_periodic_event_stream(self, **_: Any) -> None:
        # A SEND: the values are in the frame journal; nothing is written per message.
        return None

    # --- Certificates --------------------------------------------------------------------------

    @on(Action.get_certificate_chain_status)
    async def on_get_certificate_chain_status(self, **_: Any) -> Any:
        requests = self.payload["certificateStatusRequests"]
        await self._record(
            ChargerEvent.Kind.CERTIFICATE,
            status="GetCertificateChainStatusFailed",
            detail={
                "request": "GetCertificateChainStatus",
                "requests": requests,
                "reason": NO_CA_INFO,
            },
        )
        now = normalize.format_datetime(normalize.utc_now())
        return self.results.GetCertificateChainStatus(
            certificate_status=[
                {
                    "certificate_hash_data": snake(item["certificateHashData"]),
                    "source": item["source"],
                    "status": "Failed",
                    "next_update": now,
                }
                for item in requests
            ]
        )

    # --- DER, priority charging, dynamic schedules ---------------------------------------------

    @on(Action.notify_der_alarm)
    async def on_notify_der_alarm(self, **_: Any) -> Any:
        moment = self._time(self.payload["timestamp"])
        await self._record(
            ChargerEvent.Kind.DER,
            status="AlarmEnded" if self.payload.get("alarmEnded") else "Alarm",
            timestamp=moment.value,
            detail=self.payload,
        )
        return self.results.NotifyDERAlarm()

    @on(Action.notify_der_start_stop)
    async def on_notify_der_start_stop(self, **_: Any) -> Any:
        moment = self._time(self.payload["timestamp"])
        await self._record(
            ChargerEvent.Kind.DER,
            status="Started" if self.payload["started"] else "Stopped",
            timestamp=moment.value,
            detail=self.payload,
        )
        return self.results.NotifyDERStartStop()

    @on(Action.report_der_control)
    async def on_report_der_control(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.DER,
            status="Report",
            request_id=_request_id(self.payload["requestId"]),
            detail=self.payload,
        )
        return self.results.ReportDERControl()

    @on(Action.notify_priority_charging)
    async def on_notify_priority_charging(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.PRIORITY_CHARGING,
            status="Activated" if self.payload["activated"] else "Deactivated",
            detail={"transaction_id": self.payload["transactionId"]},
        )
        return self.results.NotifyPriorityCharging()

    @on(Action.pull_dynamic_schedule_update)
    async def on_pull_dynamic_schedule_update(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.DYNAMIC_SCHEDULE,
            status="Rejected",
            detail={"charging_profile_id": self.payload["chargingProfileId"]},
        )
        return self.results.PullDynamicScheduleUpdate(
            status="Rejected",
            status_info={
                "reason_code": "UnknownProfile",
                "additional_info": "no dynamic charging profile of this CSMS has that id",
            },
        )

    # --- Payment -------------------------------------------------------------------------------

    @on(Action.notify_settlement)
    async def on_notify_settlement(self, **_: Any) -> Any:
        # Money: recorded before it is answered.
        moment = self._time(self.payload["settlementTime"])
        await self._record(
            ChargerEvent.Kind.SETTLEMENT,
            status=self.payload["status"],
            timestamp=moment.value,
            detail=self.payload,
        )
        return self.results.NotifySettlement()

    @on(Action.vat_number_validation)
    async def on_vat_number_validation(self, **_: Any) -> Any:
        vat_number = self.payload["vatNumber"]
        evse_id = self.payload.get("evseId")
        await self._record(
            ChargerEvent.Kind.VAT_NUMBER,
            status="Rejected",
            detail={"vat_number": vat_number, "evse_id": evse_id},
        )
        return self.results.VatNumberValidation(
            vat_number=vat_number,
            evse_id=evse_id,
            status="Rejected",
            status_info={
                "reason_code": "NotSupported",
                "additional_info": "this CSMS does not validate VAT numbers",
            },
        )
