"""Cost messages for chargers: schema-valid payloads in the shapes chargers expect."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import costmsg
from chargers import protocol

AT = datetime(2024, 3, 5, 18, 30, tzinfo=UTC)


def running(**fields: object) -> costmsg.RunningCost:
    values: dict = {
        "transaction_id": "17",
        "at": AT,
        "meter_wh": Decimal("12345.600"),
        "total_incl_vat": Decimal("4.35"),
        "kwh_price": Decimal("0.30"),
    }
    values.update(fields)
    return costmsg.RunningCost(**values)


def test_cost_updated_is_a_valid_201_request() -> None:
    payload = costmsg.cost_updated(running())
    protocol.validate(protocol.CALL, "CostUpdated", payload, "2.0.1", "m1")
    assert payload == {"totalCost": 4.35, "transactionId": "17"}


def test_running_cost_16_is_the_oca_datatransfer() -> None:
    payload = costmsg.running_cost_16(running(idle=True))
    protocol.validate(protocol.CALL, "DataTransfer", payload, "1.6", "m1")
    assert payload["vendorId"] == "org.openchargealliance.costmsg"
    assert payload["messageId"] == "RunningCost"
    assert json.loads(payload["data"]) == {
        "transactionId": 17,
        "timestamp": "2024-03-05T18:30:00Z",
        "meterValue": 12345,
        "cost": 4.35,
        "state": "Idle",
        "chargingPrice": {"kWhPrice": 0.3},
    }


def test_final_cost_and_user_price_16() -> None:
    final = costmsg.final_cost_16(
        transaction_id="17", total_incl_vat=Decimal("9.99"), price_text="Total EUR 9.99"
    )
    protocol.validate(protocol.CALL, "DataTransfer", final, "1.6", "m1")
    assert final["messageId"] == "FinalCost"
    assert json.loads(final["data"]) == {
        "transactionId": 17,
        "cost": 9.99,
        "priceText": "Total EUR 9.99",
    }
    price = costmsg.user_price_16(id_token="TAG-1", price_text="EUR 0.30 per kWh")
    protocol.validate(protocol.CALL, "DataTransfer", price, "1.6", "m1")
    assert json.loads(price["data"]) == {"idToken": "TAG-1", "priceText": "EUR 0.30 per kWh"}


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_tariff_display_message_is_valid_and_bounded(version: str) -> None:
    payload = costmsg.tariff_display_message(
        message_id=costmsg.DISPLAY_MESSAGE_BASE_ID + 5, transaction_id="tx-9", text="x" * 600
    )
    protocol.validate(protocol.CALL, "SetDisplayMessage", payload, version, "m1")
    assert payload["message"]["transactionId"] == "tx-9"
    assert len(payload["message"]["message"]["content"]) == costmsg.DISPLAY_TEXT_LIMIT


def test_final_cost_text() -> None:
    text = costmsg.final_cost_text(
        total_incl_vat=Decimal("7.2"), currency="EUR", energy_wh=Decimal("22000")
    )
    assert text == "Total EUR 7.20 incl. VAT for 22.000 kWh"
