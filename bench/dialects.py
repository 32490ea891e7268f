"""What a benchmark charger says in each OCPP version: the CALL payloads of a charger's life
(boot, status, heartbeat, authorize, session start, meter values, session end), and the canned
CALLRESULTs the baseline server answers with.

Every payload here is schema-valid for its version, so the full stack spends its time on real work
and not on CALLERRORs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from chargers.simulator import now_iso

PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")

Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Started:
    """A session start as the charger sees it: the transaction id, and whether it may charge."""

    transaction_id: str
    accepted: bool


class Dialect16:
    protocol = "ocpp1.6"
    command_action = "ChangeConfiguration"

    def boot(self, identity: str) -> Call:
        return "BootNotification", {
            "chargePointVendor": "Bench",
            "chargePointModel": "BENCH-AC22",
            "chargePointSerialNumber": f"SN-{identity}"[:25],
            "firmwareVersion": "1.0.0",
        }

    def heartbeat(self) -> Call:
        return "Heartbeat", {}

    def status(self, connector: int, charging: bool | None) -> Call:
        status = "Available" if charging is None else "Charging" if charging else "Preparing"
        return "StatusNotification", {
            "connectorId": connector,
            "errorCode": "NoError",
            "status": status,
            "timestamp": now_iso(),
        }

    def finishing(self, connector: int) -> Call:
        return "StatusNotification", {
            "connectorId": connector,
            "errorCode": "NoError",
            "status": "Finishing",
            "timestamp": now_iso(),
        }

    def authorize(self, id_tag: str) -> Call:
        return "Authorize", {"idTag": id_tag}

    def authorized(self, reply: dict[str, Any]) -> bool:
        return bool(reply.get("idTagInfo", {}).get("status") == "Accepted")

    def start(self, connector: int, id_tag: str, meter_wh: int, local_id: str) -> Call:
        return "StartTransaction", {
            "connectorId": connector,
            "idTag": id_tag,
            "meterStart": meter_wh,
            "timestamp": now_iso(),
        }

    def started(self, reply: dict[str, Any], local_id: str) -> Started:
        accepted = reply.get("idTagInfo", {}).get("status") == "Accepted"
        return Started(str(reply.get("transactionId", "")), accepted)

    def meter(
        self, connector: int, transaction_id: str | None, meter_wh: int, power_w: float
    ) -> Call:
        amps = power_w / (3 * 230)
        sampled: list[dict[str, Any]] = [
            {
                "value": str(meter_wh),
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "context": "Sample.Periodic",
                "location": "Outlet",
            },
            {
                "value": f"{power_w / 1000:.3f}",
                "measurand": "Power.Active.Import",
                "unit": "kW",
                "context": "Sample.Periodic",
            },
        ] + [
            {
                "value": f"{amps:.1f}",
                "measurand": "Current.Import",
                "unit": "A",
                "phase": phase,
                "context": "Sample.Periodic",
            }
            for phase in ("L1", "L2", "L3")
        ]
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [{"timestamp": now_iso(), "sampledValue": sampled}],
        }
        if transaction_id is not None:
            payload["transactionId"] = int(transaction_id)
        return "MeterValues", payload

    def stop(self, connector: int, transaction_id: str, id_tag: str, meter_wh: int) -> Call:
        return "StopTransaction", {
            "transactionId": int(transaction_id),
            "idTag": id_tag,
            "meterStop": meter_wh,
            "timestamp": now_iso(),
            "reason": "Local",
        }

    def command_token(self, action: str, payload: dict[str, Any]) -> str | None:
        """The token a benchmark command carries, or None for any other CALL."""
        if action == "ChangeConfiguration" and payload.get("key") == "BenchCommand":
            return str(payload.get("value", ""))
        return None

    def command_call(self, token: str) -> Call:
        return "ChangeConfiguration", {"key": "BenchCommand", "value": token}

    def command_answer(self, action: str) -> dict[str, Any]:
        if action == "ChangeConfiguration":
            return {"status": "Accepted"}
        if action in ("TriggerMessage", "Reset", "RemoteStartTransaction", "RemoteStopTransaction"):
            return {"status": "Accepted"}
        return {}


class Dialect201:
    """OCPP 2.0.1; 2.1 chargers send the same messages."""

    command_action = "SetVariables"

    def __init__(self, protocol: str = "ocpp2.0.1") -> None:
        self.protocol = protocol
        # Each transaction numbers its events from 0 (Started).
        self._seq: dict[str, int] = {}

    def _next_seq(self, transaction_id: str) -> int:
        self._seq[transaction_id] = self._seq.get(transaction_id, 0) + 1
        return self._seq[transaction_id]

    def boot(self, identity: str) -> Call:
        return "BootNotification", {
            "reason": "PowerUp",
            "chargingStation": {
                "vendorName": "Bench",
                "model": "BENCH-AC22",
                "serialNumber": f"SN-{identity}"[:25],
                "firmwareVersion": "1.0.0",
            },
        }

    def heartbeat(self) -> Call:
        return "Heartbeat", {}

    def status(self, connector: int, charging: bool | None) -> Call:
        return "StatusNotification", {
            "timestamp": now_iso(),
            "connectorStatus": "Available" if charging is None else "Occupied",
            "evseId": connector,
            "connectorId": 1,
        }

    def finishing(self, connector: int) -> Call:
        return self.status(connector, False)

    def authorize(self, id_tag: str) -> Call:
        return "Authorize", {"idToken": {"idToken": id_tag, "type": "ISO14443"}}

    def authorized(self, reply: dict[str, Any]) -> bool:
        return bool(reply.get("idTokenInfo", {}).get("status") == "Accepted")

    def start(self, connector: int, id_tag: str, meter_wh: int, local_id: str) -> Call:
        self._seq[local_id] = 0
        return "TransactionEvent", {
            "eventType": "Started",
            "timestamp": now_iso(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": local_id, "chargingState": "Charging"},
            "idToken": {"idToken": id_tag, "type": "ISO14443"},
            "evse": {"id": connector, "connectorId": 1},
            "meterValue": [self._meter_value(meter_wh, None, "Transaction.Begin")],
        }

    def started(self, reply: dict[str, Any], local_id: str) -> Started:
        info = reply.get("idTokenInfo")
        accepted = info is None or info.get("status") == "Accepted"
        return Started(local_id, accepted)

    def _meter_value(self, meter_wh: int, power_w: float | None, context: str) -> dict[str, Any]:
        sampled: list[dict[str, Any]] = [
            {
                "value": meter_wh,
                "measurand": "Energy.Active.Import.Register",
                "context": context,
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ]
        if power_w is not None:
            amps = power_w / (3 * 230)
            sampled.append(
                {
                    "value": round(power_w, 1),
                    "measurand": "Power.Active.Import",
                    "context": context,
                    "unitOfMeasure": {"unit": "W"},
                }
            )
            sampled += [
                {
                    "value": round(amps, 1),
                    "measurand": "Current.Import",
                    "phase": phase,
                    "context": context,
                    "unitOfMeasure": {"unit": "A"},
                }
                for phase in ("L1", "L2", "L3")
            ]
        return {"timestamp": now_iso(), "sampledValue": sampled}

    def meter(
        self, connector: int, transaction_id: str | None, meter_wh: int, power_w: float
    ) -> Call:
        if transaction_id is None:
            return "MeterValues", {
                "evseId": connector,
                "meterValue": [self._meter_value(meter_wh, power_w, "Sample.Periodic")],
            }
        return "TransactionEvent", {
            "eventType": "Updated",
            "timestamp": now_iso(),
            "triggerReason": "MeterValuePeriodic",
            "seqNo": self._next_seq(transaction_id),
            "transactionInfo": {"transactionId": transaction_id, "chargingState": "Charging"},
            "meterValue": [self._meter_value(meter_wh, power_w, "Sample.Periodic")],
        }

    def stop(self, connector: int, transaction_id: str, id_tag: str, meter_wh: int) -> Call:
        seq = self._next_seq(transaction_id)
        self._seq.pop(transaction_id, None)
        return "TransactionEvent", {
            "eventType": "Ended",
            "timestamp": now_iso(),
            "triggerReason": "StopAuthorized",
            "seqNo": seq,
            "transactionInfo": {
                "transactionId": transaction_id,
                "chargingState": "EVConnected",
                "stoppedReason": "Local",
            },
            "idToken": {"idToken": id_tag, "type": "ISO14443"},
            "meterValue": [self._meter_value(meter_wh, None, "Transaction.End")],
        }

    def command_token(self, action: str, payload: dict[str, Any]) -> str | None:
        if action != "SetVariables":
            return None
        for item in payload.get("setVariableData", []):
            if item.get("variable", {}).get("name") == "BenchCommand":
                return str(item.get("attributeValue", ""))
        return None

    def command_call(self, token: str) -> Call:
        return "SetVariables", {
            "setVariableData": [
                {
                    "attributeValue": token,
                    "component": {"name": "Bench"},
                    "variable": {"name": "BenchCommand"},
                }
            ]
        }

    def command_answer(self, action: str) -> dict[str, Any]:
        if action == "SetVariables":
            return {
                "setVariableResult": [
                    {
                        "attributeStatus": "Accepted",
                        "component": {"name": "Bench"},
                        "variable": {"name": "BenchCommand"},
                    }
                ]
            }
        if action in (
            "TriggerMessage",
            "Reset",
            "RequestStartTransaction",
            "RequestStopTransaction",
        ):
            return {"status": "Accepted"}
        return {}


Dialect = Dialect16 | Dialect201


def dialect_for(protocol: str) -> Dialect:
    if protocol == "ocpp1.6":
        return Dialect16()
    if protocol in ("ocpp2.0.1", "ocpp2.1"):
        return Dialect201(protocol)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


# --- The baseline's canned answers ----------------------------------------------------------------

_transaction_ids = itertools.count(1)


def canned_result(protocol: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A schema-valid CALLRESULT payload for ``action``, without looking anything up."""
    if action == "BootNotification":
        return {"currentTime": now_iso(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now_iso()}
    if protocol == "ocpp1.6":
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            return {"transactionId": next(_transaction_ids), "idTagInfo": {"status": "Accepted"}}
        return {}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    if action == "TransactionEvent" and "idToken" in payload:
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}
