"""OCPP 2.0.1 handlers: every charger-initiated message.

Handlers are thin: they read the payload as the charger sent it (``self.call``, camelCase and
verbatim), turn it into the normalized model shared with 1.6 and make one service call (one
thread hop). StatusNotification and MeterValues touch memory only; the batch writer flushes them.
TransactionEvent carries money and energy: it is persisted before it is answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from . import (
    datatransfer,
    devicemodel,
    groupcommit,
    normalize,
    normalize2x,
    protocol,
    quirks,
    reservation_services,
    services,
)
from .batching import BatchWriter, SampleRow, StatusRow
from .dbpool import database_sync_to_async
from .dispatch import Dispatcher
from .models import ChargerEvent, Frame, RegistrationStatus

KNOWN_ACTIONS = frozenset(action.value for action in Action)

ID_MIN, ID_MAX = -(2**63), 2**63 - 1

# What we answer while no certificate authority is configured: a clear, schema-valid refusal.
NO_CA_REASON = "NoCAConfigured"
NO_CA_INFO = "certificate management is not configured on this CSMS"

# Our answer to NotifyEVChargingNeeds: the needs are kept for smart charging, which answers
# with a charging profile of its own when it has one; we promise none here.
EV_CHARGING_NEEDS_STATUS = "Rejected"


def _request_id(value: Any, name: str = "requestId") -> int | None:
    if value is None:
        return None
    return normalize.check_integer(value, name, minimum=ID_MIN, maximum=ID_MAX)


class ChargePoint201:
    """The CSMS side of one 2.0.1 charger connection."""

    version = "2.0.1"
    results: Any = call_result
    dispatcher_class: type[Dispatcher] = Dispatcher
    ev_charging_needs_status = EV_CHARGING_NEEDS_STATUS

    def __init__(self, connection: services.Connection, writer: BatchWriter):
        self.connection = connection
        self.writer = writer
        self.registration_status = connection.registration_status
        self.context = quirks.Context(connection.corrections, connection.time_zone)
        self.call: protocol.Call | None = None
        # What this connection knows of its connectors, by connector number: the last raw
        # connectorStatus, the running transaction's chargingState, and the status last shown.
        self.raw_status: dict[int, str] = {}
        self.charging_state: dict[int, str] = {}
        self.transaction_phase: dict[int, str] = {}
        self.shown_status: dict[int, str] = {}
        self.transaction_connectors: dict[str, int] = {}

    def accepts_requests(self) -> bool:
        return self.registration_status == RegistrationStatus.ACCEPTED

    def prepare_call(self, call: protocol.Call) -> protocol.Call:
        """Keep the frame as sent: payloads are read verbatim, never through renamed keys."""
        self.call = call
        return call

    @property
    def payload(self) -> dict[str, Any]:
        assert self.call is not None
        return self.call.payload

    @property
    def charger_pk(self) -> int:
        return self.connection.charger_pk

    @property
    def organization_pk(self) -> int:
        return self.connection.organization_pk

    def _time(self, text: str) -> quirks.Corrected[datetime]:
        return quirks.read_timestamp(text, self.context, received_at=normalize.utc_now())

    def _now(self) -> str:
        return normalize.format_datetime(normalize.utc_now())

    async def _record(self, kind: str, **fields: Any) -> None:
        await database_sync_to_async(services.charger_event_record)(
            charger_pk=self.charger_pk, kind=kind, **fields
        )

    # --- Provisioning --------------------------------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> Any:
        station = self.payload["chargingStation"]
        modem = station.get("modem") or {}
        info = services.BootInfo(
            vendor=station["vendorName"],
            model=station["model"],
            serial_number=station.get("serialNumber", ""),
            firmware_version=station.get("firmwareVersion", ""),
            iccid=modem.get("iccid", ""),
            imsi=modem.get("imsi", ""),
            reason=self.payload["reason"],
        )
        result = await groupcommit.boots().submit(
            services.Boot(charger_pk=self.charger_pk, info=info)
        )
        self.registration_status = result.status
        self.context = quirks.Context(result.corrections, self.context.time_zone)
        return self.results.BootNotification(
            current_time=self._now(), interval=result.interval, status=result.status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> Any:
        # last_seen is refreshed for every frame by the consumer; nothing else to write.
        return self.results.Heartbeat(current_time=self._now())

    @on(Action.notify_report)
    async def on_notify_report(self, **_: Any) -> Any:
        request_id = _request_id(self.payload["requestId"])
        assert request_id is not None
        report = self.payload.get("reportData") or []
        moment = self._time(self.payload["generatedAt"])

        def store() -> None:
            count = devicemodel.device_report_store(
                charger_pk=self.charger_pk, request_id=request_id, report_data=report
            )
            services.charger_event_record(
                charger_pk=self.charger_pk,
                kind=ChargerEvent.Kind.DEVICE_REPORT,
                status="ToBeContinued" if self.payload.get("tbc") else "Complete",
                request_id=request_id,
                timestamp=moment.value,
                detail={"seq_no": self.payload["seqNo"], "variables": count},
            )

        await database_sync_to_async(store)()
        return self.results.NotifyReport()

    @on(Action.notify_monitoring_report)
    async def on_notify_monitoring_report(self, **_: Any) -> Any:
        request_id = _request_id(self.payload["requestId"])
        assert request_id is not None
        monitors = self.payload.get("monitor") or []
        moment = self._time(self.payload["generatedAt"])

        def store() -> None:
            count = devicemodel.device_monitoring_store(
                charger_pk=self.charger_pk, request_id=request_id, monitors=monitors
            )
            services.charger_event_record(
                charger_pk=self.charger_pk,
                kind=ChargerEvent.Kind.MONITORING_REPORT,
                status="ToBeContinued" if self.payload.get("tbc") else "Complete",
                request_id=request_id,
                timestamp=moment.value,
                detail={"seq_no": self.payload["seqNo"], "monitors": count},
            )

        await database_sync_to_async(store)()
        return self.results.NotifyMonitoringReport()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> Any:
        statuses: list[StatusRow] = []
        actual: list[tuple[devicemodel.VariableRef, str]] = []
        records: list[tuple[datetime, str, dict[str, Any], tuple[str, ...]]] = []
        for event in self.payload["eventData"]:
            moment = self._time(event["timestamp"])
            ref = devicemodel.variable_ref(event["component"], event["variable"])
            value = str(event["actualValue"])
            actual.append((ref, value))
            records.append((moment.value, value, event, moment.corrections))
            # Chargers may report connector availability as events instead of StatusNotification.
            if (
                ref.component_name == "Connector"
                and ref.variable_name == "AvailabilityState"
                and ref.evse_id
            ):
                statuses.append(
                    self._status_row(
                        ref.evse_id, ref.connector_id or 1, value, moment.value, moment.corrections
                    )
                )

        def store() -> None:
            for moment, value, event, corrections in records:
                services.charger_event_record(
                    charger_pk=self.charger_pk,
                    kind=ChargerEvent.Kind.DEVICE_EVENT,
                    status=value[:64],
                    timestamp=moment,
                    detail={
                        **event,
                        "seqNo": self.payload["seqNo"],
                        **({"corrections": list(corrections)} if corrections else {}),
                    },
                )
            devicemodel.device_actual_values_update(charger_pk=self.charger_pk, values=actual)

        await database_sync_to_async(store)()
        for row in statuses:
            self.writer.add_status(row)
        return self.results.NotifyEvent()

    # --- Availability --------------------------------------------------------------------------

    def _status_row(
        self,
        evse_id: int,
        connector_id: int,
        raw: str,
        moment: datetime,
        corrections: tuple[str, ...] = (),
    ) -> StatusRow:
        number = normalize2x.connector_number(evse_id, connector_id)
        self.raw_status[number] = raw
        status = self._shown(number)
        self.shown_status[number] = status
        return StatusRow(
            charger_pk=self.charger_pk,
            organization_pk=self.organization_pk,
            charger_identity=self.connection.identity,
            connector_id=number,
            evse_id=evse_id,
            status=status,
            raw_status=raw,
            error_code="",
            info="",
            vendor_id="",
            vendor_error_code="",
            timestamp=moment,
            evse_connector_id=connector_id,
            corrections=corrections,
        )

    def _shown(self, number: int) -> str:
        return normalize2x.status_from_v2(
            self.raw_status.get(number, ""),
            charging_state=self.charging_state.get(number, ""),
            transaction=self.transaction_phase.get(number, ""),
        )

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> Any:
        moment = self._time(self.payload["timestamp"])
        self.writer.add_status(
            self._status_row(
                self.payload["evseId"],
                self.payload["connectorId"],
                self.payload["connectorStatus"],
                moment.value,
                moment.corrections,
            )
        )
        return self.results.StatusNotification()

    # --- Authorization -------------------------------------------------------------------------

    @on(Action.authorize)
    async def on_authorize(self, **_: Any) -> Any:
        id_token = normalize2x.id_token(self.payload["idToken"])
        assert id_token is not None
        info = await database_sync_to_async(services.id_token_authorize_2x)(
            organization_pk=self.organization_pk, id_token=id_token
        )
        certificate = self.payload.get("certificate") or self.payload.get(
            "iso15118CertificateHashData"
        )
        return self.results.Authorize(
            id_token_info=info,
            # Contract certificates cannot be checked until certificate management exists.
            certificate_status="NoCertificateAvailable" if certificate else None,
        )

    # --- Transactions --------------------------------------------------------------------------

    @on(Action.transaction_event)
    async def on_transaction_event(self, **_: Any) -> Any:
        event = normalize2x.transaction_event(
            self.payload, self.context, received_at=normalize.utc_now()
        )
        result = await database_sync_to_async(services.session_transaction_event)(
            charger_pk=self.charger_pk,
            organization_pk=self.organization_pk,
            event=event,
            ocpp_version=self.version,
            corrections=self.context.corrections,
        )
        if not result.duplicate:
            self._transaction_status(event, result)
        total_cost = None
        if result.ended and event.event_type == "Ended":
            # Chargers that show cost get the final cost in the answer to Ended (billing decides).
            from billing.record_services import session_total_cost

            cost = await database_sync_to_async(session_total_cost)(session_pk=result.session_pk)
            total_cost = float(cost) if cost is not None else None
        return self.results.TransactionEvent(
            id_token_info=result.id_token_info, total_cost=total_cost
        )

    def _transaction_status(
        self, event: normalize2x.TransactionEventIn, result: services.TransactionEventResult
    ) -> None:
        """A transaction's chargingState refines what an occupied connector shows."""
        number = event.connector_number
        if number is None:
            number = self.transaction_connectors.get(event.transaction_id, result.connector_number)
        if not number:
            return
        self.transaction_connectors[event.transaction_id] = number
        if result.ended:
            self.transaction_phase[number] = "ended"
            self.charging_state.pop(number, None)
            self.transaction_connectors.pop(event.transaction_id, None)
        else:
            self.transaction_phase[number] = "active"
            if event.charging_state:
                self.charging_state[number] = event.charging_state
            if event.charging_state in ("Charging", "SuspendedEV", "SuspendedEVSE", "EVConnected"):
                # The EV is connected, so the connector is occupied even if not yet reported.
                self.raw_status.setdefault(number, "Occupied")
        if number not in self.raw_status:
            return
        status = self._shown(number)
        if status == self.shown_status.get(number):
            return
        self.shown_status[number] = status
        evse_id, connector_id = normalize2x.evse_of(number)
        self.writer.add_status(
            StatusRow(
                charger_pk=self.charger_pk,
                organization_pk=self.organization_pk,
                charger_identity=self.connection.identity,
                connector_id=number,
                evse_id=evse_id,
                status=status,
                raw_status=self.raw_status[number],
                error_code="",
                info=f"chargingState {event.charging_state}" if event.charging_state else "",
                vendor_id="",
                vendor_error_code="",
                timestamp=event.timestamp,
                evse_connector_id=connector_id,
                corrections=event.corrections,
            )
        )

    # --- Meter values --------------------------------------------------------------------------

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> Any:
        evse_id = self.payload["evseId"]
        number = normalize2x.connector_number(evse_id)
        samples = normalize2x.samples_from_v2(
            self.payload["meterValue"], self.context, received_at=normalize.utc_now()
        )
        # 2.x readings outside TransactionEvent belong to no transaction: the hot path.
        self.writer.add_samples([SampleRow(self.charger_pk, number, sample) for sample in samples])
        return self.results.MeterValues()

    # --- Smart charging ------------------------------------------------------------------------

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, **_: Any) -> Any:
        limit = self.payload["chargingLimit"]
        evse_id = self.payload.get("evseId")
        if evse_id is not None:
            normalize.check_integer(evse_id, "evseId")
        await database_sync_to_async(services.charging_limit_record)(
            charger_pk=self.charger_pk,
            evse_id=evse_id,
            source=str(limit["chargingLimitSource"]),
            is_grid_critical=limit.get("isGridCritical"),
            schedules=self.payload.get("chargingSchedule") or [],
            detail=limit,
        )
        return self.results.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, **_: Any) -> Any:
        evse_id = self.payload.get("evseId")
        if evse_id is not None:
            normalize.check_integer(evse_id, "evseId")
        await database_sync_to_async(services.charging_limit_clear)(
            charger_pk=self.charger_pk,
            evse_id=evse_id,
            source=str(self.payload["chargingLimitSource"]),
        )
        return self.results.ClearedChargingLimit()

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, **_: Any) -> Any:
        needs = normalize2x.ev_charging_needs(
            self.payload, self.context, received_at=normalize.utc_now()
        )
        status = self.ev_charging_needs_status
        await database_sync_to_async(services.ev_charging_needs_record)(
            charger_pk=self.charger_pk, needs=needs, response_status=status
        )
        return self.results.NotifyEVChargingNeeds(status=status)

    @on(Action.notify_ev_charging_schedule)
    async def on_notify_ev_charging_schedule(self, **_: Any) -> Any:
        moment = self._time(self.payload["timeBase"])
        await self._record(
            ChargerEvent.Kind.EV_CHARGING_SCHEDULE,
            status="Accepted",
            timestamp=moment.value,
            detail={
                "evse_id": self.payload["evseId"],
                "charging_schedule": self.payload["chargingSchedule"],
            },
        )
        return self.results.NotifyEVChargingSchedule(status="Accepted")

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.CHARGING_PROFILES,
            status=str(self.payload["chargingLimitSource"]),
            request_id=_request_id(self.payload["requestId"]),
            detail={
                "evse_id": self.payload["evseId"],
                "tbc": bool(self.payload.get("tbc", False)),
                "charging_profile": self.payload["chargingProfile"],
            },
        )
        return self.results.ReportChargingProfiles()

    # --- Reservations, display messages, customer information ---------------------------------

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, **_: Any) -> Any:
        reservation_id = _request_id(self.payload["reservationId"], "reservationId")
        assert reservation_id is not None
        await database_sync_to_async(reservation_services.reservation_status_report)(
            charger_pk=self.charger_pk,
            reservation_id=reservation_id,
            status=str(self.payload["reservationUpdateStatus"]),
        )
        return self.results.ReservationStatusUpdate()

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(self, **_: Any) -> Any:
        moment = self._time(self.payload["generatedAt"])
        await self._record(
            ChargerEvent.Kind.CUSTOMER_INFORMATION,
            status="ToBeContinued" if self.payload.get("tbc") else "Complete",
            request_id=_request_id(self.payload["requestId"]),
            timestamp=moment.value,
            detail={"seq_no": self.payload["seqNo"], "data": self.payload["data"]},
        )
        return self.results.NotifyCustomerInformation()

    @on(Action.notify_display_messages)
    async def on_notify_display_messages(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.DISPLAY_MESSAGES,
            status="ToBeContinued" if self.payload.get("tbc") else "Complete",
            request_id=_request_id(self.payload["requestId"]),
            detail={"message_info": self.payload.get("messageInfo") or []},
        )
        return self.results.NotifyDisplayMessages()

    # --- Firmware, logs, security --------------------------------------------------------------

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.FIRMWARE,
            status=self.payload["status"],
            request_id=_request_id(self.payload.get("requestId")),
            detail={"status_info": self.payload["statusInfo"]}
            if "statusInfo" in self.payload
            else {},
        )
        return self.results.FirmwareStatusNotification()

    @on(Action.publish_firmware_status_notification)
    async def on_publish_firmware_status_notification(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.PUBLISH_FIRMWARE,
            status=self.payload["status"],
            request_id=_request_id(self.payload.get("requestId")),
            detail={"location": self.payload.get("location") or []},
        )
        return self.results.PublishFirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.LOG,
            status=self.payload["status"],
            request_id=_request_id(self.payload.get("requestId")),
        )
        return self.results.LogStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, **_: Any) -> Any:
        moment = self._time(self.payload["timestamp"])
        await self._record(
            ChargerEvent.Kind.SECURITY,
            status=self.payload["type"],
            timestamp=moment.value,
            detail={"tech_info": self.payload.get("techInfo", "")},
        )
        return self.results.SecurityEventNotification()

    # --- Certificates: recorded and refused until certificate management exists --------------

    def _refusal(self) -> dict[str, str]:
        return {"reason_code": NO_CA_REASON, "additional_info": NO_CA_INFO}

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.CERTIFICATE,
            status="SignCertificateRejected",
            request_id=_request_id(self.payload.get("requestId")),
            detail={
                "request": "SignCertificate",
                "certificate_type": self.payload.get(
                    "certificateType", "ChargingStationCertificate"
                ),
                "csr": self.payload["csr"],
                "reason": NO_CA_INFO,
            },
        )
        return self.results.SignCertificate(status="Rejected", status_info=self._refusal())

    @on(Action.get_15118_ev_certificate)
    async def on_get_15118_ev_certificate(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.CERTIFICATE,
            status="Get15118EVCertificateFailed",
            detail={
                "request": "Get15118EVCertificate",
                "schema_version": self.payload["iso15118SchemaVersion"],
                "action": self.payload["action"],
                "exi_request": self.payload["exiRequest"],
                "reason": NO_CA_INFO,
            },
        )
        return self.results.Get15118EVCertificate(
            status="Failed", exi_response="", status_info=self._refusal()
        )

    @on(Action.get_certificate_status)
    async def on_get_certificate_status(self, **_: Any) -> Any:
        await self._record(
            ChargerEvent.Kind.CERTIFICATE,
            status="GetCertificateStatusFailed",
            detail={
                "request": "GetCertificateStatus",
                "ocsp_request_data": self.payload["ocspRequestData"],
                "reason": NO_CA_INFO,
            },
        )
        return self.results.GetCertificateStatus(status="Failed", status_info=self._refusal())

    # --- Data transfer -------------------------------------------------------------------------

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> Any:
        vendor_id = self.payload["vendorId"]
        message_id = self.payload.get("messageId", "")
        data = self.payload.get("data")
        # 2.x data may be any JSON value; handlers and the record see it as text.
        text = "" if data is None else data if isinstance(data, str) else normalize2x.dumps(data)
        status, reply = await database_sync_to_async(self._data_transfer)(
            vendor_id, message_id, text
        )
        return self.results.DataTransfer(status=status, data=reply)

    def _data_transfer(self, vendor_id: str, message_id: str, data: str) -> tuple[str, str | None]:
        status, reply = datatransfer.handle(
            datatransfer.Request(self.connection.identity, vendor_id, message_id, data)
        )
        services.data_transfer_record(
            charger_pk=self.charger_pk,
            direction=Frame.Direction.IN,
            vendor_id=vendor_id,
            message_id=message_id,
            data=data,
            response_status=status,
            response_data=reply or "",
        )
        return status, reply


def snake(data: dict[str, Any]) -> dict[str, Any]:
    """A camelCase structure from a payload in the snake_case that ``call_result`` fields take."""
    result: dict[str, Any] = camel_to_snake_case(data)
    return result
