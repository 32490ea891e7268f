"""The messages that show price and cost on a charger, as payloads for commands. Pure.

OCPP 2.0.1 and 2.1 have them natively: CostUpdated (running cost), SetDisplayMessage (the tariff
text) and totalCost in the TransactionEvent Ended answer. OCPP 1.6 carries the OCA's California
Pricing messages in DataTransfer (vendor ``org.openchargealliance.costmsg``): SetUserPrice (the
tariff text for a driver), RunningCost and FinalCost, their ``data`` a JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

COSTMSG_VENDOR = "org.openchargealliance.costmsg"
# Display messages the system sets for a transaction take ids from here on, clear of ids an
# operator picks by hand.
DISPLAY_MESSAGE_BASE_ID = 900_000_000
DISPLAY_TEXT_LIMIT = 512


@dataclass(frozen=True, slots=True)
class RunningCost:
    transaction_id: str
    at: datetime
    meter_wh: Decimal
    total_incl_vat: Decimal
    idle: bool = False
    kwh_price: Decimal | None = None
    hour_price: Decimal | None = None
    flat_fee: Decimal | None = None


def _number(value: Decimal) -> float:
    # Amounts are cents, which a JSON number carries exactly as written.
    return float(value)


def _timestamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _charging_price(cost: RunningCost) -> dict[str, float]:
    price: dict[str, float] = {}
    if cost.kwh_price is not None:
        price["kWhPrice"] = _number(cost.kwh_price)
    if cost.hour_price is not None:
        price["hourPrice"] = _number(cost.hour_price)
    if cost.flat_fee is not None:
        price["flatFee"] = _number(cost.flat_fee)
    return price


def cost_updated(cost: RunningCost) -> dict[str, Any]:
    """2.x CostUpdated: the running total including taxes."""
    return {"totalCost": _number(cost.total_incl_vat), "transactionId": cost.transaction_id}


def _datatransfer(message_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "vendorId": COSTMSG_VENDOR,
        "messageId": message_id,
        "data": json.dumps(data, separators=(",", ":")),
    }


def _transaction_number(transaction_id: str) -> int | str:
    # 1.6 transaction ids are integers; the whitepaper's messages carry them as numbers.
    return int(transaction_id) if transaction_id.lstrip("-").isdigit() else transaction_id


def running_cost_16(cost: RunningCost) -> dict[str, Any]:
    """1.6 DataTransfer RunningCost."""
    data: dict[str, Any] = {
        "transactionId": _transaction_number(cost.transaction_id),
        "timestamp": _timestamp(cost.at),
        "meterValue": int(cost.meter_wh),
        "cost": _number(cost.total_incl_vat),
        "state": "Idle" if cost.idle else "Charging",
    }
    price = _charging_price(cost)
    if price:
        data["chargingPrice"] = price
    return _datatransfer("RunningCost", data)


def final_cost_16(*, transaction_id: str, total_incl_vat: Decimal, price_text: str) -> dict:
    """1.6 DataTransfer FinalCost: the cost and the text the charger shows."""
    return _datatransfer(
        "FinalCost",
        {
            "transactionId": _transaction_number(transaction_id),
            "cost": _number(total_incl_vat),
            "priceText": price_text,
        },
    )


def user_price_16(*, id_token: str, price_text: str) -> dict[str, Any]:
    """1.6 DataTransfer SetUserPrice: the tariff text for the driver who identified."""
    return _datatransfer("SetUserPrice", {"idToken": id_token, "priceText": price_text})


def tariff_display_message(*, message_id: int, transaction_id: str, text: str) -> dict[str, Any]:
    """2.x SetDisplayMessage: the tariff text, shown during the transaction."""
    return {
        "message": {
            "id": message_id,
            "priority": "InFront",
            "transactionId": transaction_id,
            "message": {"format": "UTF8", "content": text[:DISPLAY_TEXT_LIMIT]},
        }
    }


def money_text(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:.2f}"


def final_cost_text(*, total_incl_vat: Decimal, currency: str, energy_wh: Decimal) -> str:
    kwh = (energy_wh / 1000).quantize(Decimal("0.001"))
    return f"Total {money_text(total_incl_vat, currency)} incl. VAT for {kwh} kWh"
