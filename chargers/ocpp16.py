"""OCPP 1.6J handlers: every charger-initiated message, including the security extension.

Handlers are thin: they normalize the payload once and make one service call (one thread hop).
Heartbeat, StatusNotification and meter values outside a transaction touch memory only; the batch
writer flushes them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result, datatypes
from ocpp.v16.enums import Action

from . import datatransfer, groupcommit, normalize, protocol, quirks, services
from .batching import BatchWriter, SampleRow, StatusRow
from .dbpool import database_sync_to_async
from .models import ChargerEvent, Frame, RegistrationStatus

KNOWN_ACTIONS = frozenset(action.value for action in Action)

# Bounds the 1.6 schemas leave open; a value outside them gets PropertyConstraintViolation.
_TRANSACTION_ID = {"minimum": -(2**63), "maximum": 2**63 - 1}
_METER_WH = {"minimum": 1 - 10**15, "maximum": 10**15 - 1}


def _request_id(kwargs: dict[str, Any]) -> int | None:
    request_id = kwargs.get("request_id")
    if request_id is not None:
        normalize.check_integer(request_id, "requestId", **_TRANSACTION_ID)
    return request_id


def _id_tag_info(authorization: services.Authorization) -> datatypes.IdTagInfo:
    return datatypes.IdTagInfo(
        status=authorization.status,
        parent_id_tag=authorization.group_token or None,
        expiry_date=(
            normalize.format_datetime(authorization.expires_at)
            if authorization.expires_at
            else None
        ),
    )


class ChargePoint16:
    """The central system's side of one 1.6 charger connection."""

    version = "1.6"

    def __init__(self, connection: services.Connection, writer: BatchWriter):
        self.connection = connection
        self.writer = writer
        self.registration_status = connection.registration_status
        self.context = quirks.Context(connection.corrections, connection.time_zone)
        # The running energy of this connection's sessions, so MeterValues add to it.
        self.open_sessions: services.OpenSessions = {}

    def accepts_requests(self) -> bool:
        return self.registration_status == RegistrationStatus.ACCEPTED

    def prepare_call(self, call: protocol.Call) -> protocol.Call:
        """A charger whose quirk profile says it leaves out StopTransaction's transactionId gets
        it filled with 0 (which then means: its open session) so that the frame validates."""
        if (
            call.action == "StopTransaction"
            and "transactionId" not in call.payload
            and self.context.has(quirks.Correction.STOP_WITHOUT_TRANSACTION_ID)
        ):
            return protocol.Call(call.message_id, call.action, {**call.payload, "transactionId": 0})
        return call

    def _time(self, text: str) -> quirks.Corrected[datetime]:
        return quirks.read_timestamp(text, self.context, received_at=normalize.utc_now())

    def _meter(self, wh: int) -> quirks.Corrected[Decimal]:
        return quirks.correct_energy(
            Decimal(wh), measurand=normalize.ENERGY_REGISTER, unit_label="", context=self.context
        )

    @property
    def _register_resets(self) -> bool:
        return self.context.has(quirks.Correction.REGISTER_RESETS_ON_REBOOT)

    @property
    def charger_pk(self) -> int:
        return self.connection.charger_pk

    @property
    def organization_pk(self) -> int:
        return self.connection.organization_pk

    # --- Core profile --------------------------------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        info = services.BootInfo(
            vendor=charge_point_vendor,
            model=charge_point_model,
            serial_number=kwargs.get("charge_point_serial_number")
            or kwargs.get("charge_box_serial_number")
            or "",
            firmware_version=kwargs.get("firmware_version", ""),
            iccid=kwargs.get("iccid", ""),
            imsi=kwargs.get("imsi", ""),
            meter_type=kwargs.get("meter_type", ""),
            meter_serial_number=kwargs.get("meter_serial_number", ""),
        )
        result = await groupcommit.boots().submit(
            services.Boot(charger_pk=self.charger_pk, info=info)
        )
        self.registration_status = result.status
        self.context = quirks.Context(result.corrections, self.context.time_zone)
        return call_result.BootNotification(
            current_time=normalize.format_datetime(normalize.utc_now()),
            interval=result.interval,
            status=result.status,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        # last_seen is refreshed for every frame by the consumer; nothing else to write.
        return call_result.Heartbeat(current_time=normalize.format_datetime(normalize.utc_now()))

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        normalize.check_integer(connector_id, "connectorId")
        moment = (
            self._time(kwargs["timestamp"])
            if kwargs.get("timestamp")
            else quirks.Corrected(normalize.utc_now())
        )
        self.writer.add_status(
            StatusRow(
                charger_pk=self.charger_pk,
                organization_pk=self.organization_pk,
                charger_identity=self.connection.identity,
                connector_id=connector_id,
                evse_id=connector_id or None,
                status=normalize.status_from_v16(status),
                raw_status=status,
                error_code=error_code,
                info=kwargs.get("info", ""),
                vendor_id=kwargs.get("vendor_id", ""),
                vendor_error_code=kwargs.get("vendor_error_code", ""),
                timestamp=moment.value,
                corrections=moment.corrections,
            )
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> call_result.Authorize:
        authorization = await database_sync_to_async(services.id_token_authorize)(
            organization_pk=self.organization_pk, token=id_tag
        )
        return call_result.Authorize(id_tag_info=_id_tag_info(authorization))

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        normalize.check_integer(connector_id, "connectorId", minimum=1)
        normalize.check_integer(meter_start, "meterStart", **_METER_WH)
        if kwargs.get("reservation_id") is not None:
            normalize.check_integer(kwargs["reservation_id"], "reservationId", **_TRANSACTION_ID)
        moment, meter = self._time(timestamp), self._meter(meter_start)
        request = normalize.StartRequest(
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start_wh=meter.value,
            timestamp=moment.value,
            start_key=normalize.start_fingerprint(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=meter_start,
                timestamp=timestamp,
            ),
            reservation_id=kwargs.get("reservation_id"),
            corrections=quirks.merge(moment.corrections, meter.corrections),
        )
        result = await database_sync_to_async(services.session_start)(
            charger_pk=self.charger_pk,
            organization_pk=self.organization_pk,
            request=request,
            ocpp_version=self.version,
        )
        return call_result.StartTransaction(
            transaction_id=result.transaction_id, id_tag_info=_id_tag_info(result.authorization)
        )

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **kwargs: Any
    ) -> call_result.MeterValues:
        normalize.check_integer(connector_id, "connectorId")
        samples = quirks.samples_from_v16(
            meter_value, self.context, received_at=normalize.utc_now()
        )
        transaction_id = kwargs.get("transaction_id")
        if transaction_id is not None:
            normalize.check_integer(transaction_id, "transactionId", **_TRANSACTION_ID)
        if transaction_id is None:
            self.writer.add_samples(
                [SampleRow(self.charger_pk, connector_id, sample) for sample in samples]
            )
        else:
            # Energy inside a transaction carries money: persisted before it is acknowledged,
            # in a group commit with other chargers' meter values.
            await groupcommit.meter_values().submit(
                services.MeterValuesIn(
                    charger_pk=self.charger_pk,
                    organization_pk=self.organization_pk,
                    connector_id=connector_id,
                    transaction_id=str(transaction_id),
                    samples=samples,
                    register_resets=self._register_resets,
                    open_sessions=self.open_sessions,
                )
            )
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> call_result.StopTransaction:
        normalize.check_integer(transaction_id, "transactionId", **_TRANSACTION_ID)
        normalize.check_integer(meter_stop, "meterStop", **_METER_WH)
        moment, meter = self._time(timestamp), self._meter(meter_stop)
        self.open_sessions.pop(str(transaction_id), None)
        # With the quirk on, 0 (or a left-out id, see prepare_call) means: the open session.
        infer = transaction_id == 0 and self.context.has(
            quirks.Correction.STOP_WITHOUT_TRANSACTION_ID
        )
        request = normalize.StopRequest(
            transaction_id="" if infer else str(transaction_id),
            id_tag=kwargs.get("id_tag", ""),
            meter_stop_wh=meter.value,
            timestamp=moment.value,
            reason=kwargs.get("reason", "Local"),
            samples=quirks.samples_from_v16(
                kwargs.get("transaction_data") or [], self.context, received_at=normalize.utc_now()
            ),
            corrections=quirks.merge(moment.corrections, meter.corrections),
        )
        result = await database_sync_to_async(services.session_stop)(
            charger_pk=self.charger_pk,
            organization_pk=self.organization_pk,
            request=request,
            raw_payload={
                "meterStop": meter_stop,
                "timestamp": timestamp,
                "transactionId": transaction_id,
                **({"idTag": request.id_tag} if request.id_tag else {}),
                **({"reason": kwargs["reason"]} if "reason" in kwargs else {}),
            },
            register_resets=self._register_resets,
        )
        return call_result.StopTransaction(
            id_tag_info=_id_tag_info(result.authorization) if result.authorization else None
        )

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        message_id = kwargs.get("message_id", "")
        data = kwargs.get("data", "")
        status, reply = await database_sync_to_async(self._data_transfer)(
            vendor_id, message_id, data
        )
        return call_result.DataTransfer(status=status, data=reply)

    def _data_transfer(self, vendor_id: str, message_id: str, data: str) -> tuple[str, str | None]:
        status, reply = datatransfer.handle(
            datatransfer.Request(self.connection.identity, vendor_id, message_id, data)
        )
        services.data_transfer_record(
            charger_pk=self.charger_pk,
            direction=Frame.Direction.IN,
            vendor_id=vendor_id,
            message_id=message_id,
            data=data if isinstance(data, str) else str(data),
            response_status=status,
            response_data=reply or "",
        )
        return status, reply

    # --- Firmware management and diagnostics ---------------------------------------------------

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(
        self, status: str
    ) -> call_result.DiagnosticsStatusNotification:
        await self._record(ChargerEvent.Kind.DIAGNOSTICS, status=status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(
        self, status: str
    ) -> call_result.FirmwareStatusNotification:
        await self._record(ChargerEvent.Kind.FIRMWARE, status=status)
        return call_result.FirmwareStatusNotification()

    # --- Security extension --------------------------------------------------------------------

    @on(Action.security_event_notification)
    async def on_security_event_notification(
        self, type: str, timestamp: str, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        await self._record(
            ChargerEvent.Kind.SECURITY,
            status=type,
            timestamp=normalize.parse_datetime(timestamp),
            detail={"tech_info": kwargs.get("tech_info", "")},
        )
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.LogStatusNotification:
        await self._record(ChargerEvent.Kind.LOG, status=status, request_id=_request_id(kwargs))
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        await self._record(
            ChargerEvent.Kind.SIGNED_FIRMWARE, status=status, request_id=_request_id(kwargs)
        )
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str) -> call_result.SignCertificate:
        # No certificate authority is configured: refuse clearly, and keep the request.
        await self._record(
            ChargerEvent.Kind.SECURITY,
            status="SignCertificateRejected",
            detail={"csr": csr, "reason": "no certificate authority configured"},
        )
        return call_result.SignCertificate(status="Rejected")

    async def _record(self, kind: str, **fields: Any) -> None:
        await database_sync_to_async(services.charger_event_record)(
            charger_pk=self.charger_pk, kind=kind, **fields
        )
