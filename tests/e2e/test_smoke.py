"""Smoke: a strict OCPP 1.6 client (the ocpp package, none of our code) boots against daphne."""

from __future__ import annotations

import asyncio
import base64

import pytest
import websockets
from ocpp.v16 import ChargePoint, call

from tests.conftest import CHARGER_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_boot_over_a_real_socket(server, charger):
    token = base64.b64encode(f"{charger.identity}:{CHARGER_PASSWORD}".encode()).decode()
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {token}"},
    ) as ws:
        client = ChargePoint(charger.identity, ws)
        reader = asyncio.create_task(client.start())
        result = await client.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        reader.cancel()
    assert result.status == "Accepted"
    assert result.interval == 300
    assert result.current_time.endswith("Z")
