"""Configuration baselines end to end: a 1.6 charger on the real server reports its
configuration, drifts from its model's baseline, and applying the baseline sends it
ChangeConfiguration for what differs; its answers (one key refused) land in the drift report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from chargers.models import Charger
from operations import baselines
from operations.baselines import SettingIn
from operations.models import BaselineResult
from tests.e2e.commanding import answering_charger, boot, eventually, finished
from tests.e2e.worker import celery_worker  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def configuration(client: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "configurationKey": [
            {"key": key, "readonly": readonly, "value": value}
            for key, (value, readonly) in client.config.items()
        ]
    }


def change(client: Any, payload: dict[str, Any]) -> dict[str, str]:
    key = payload["key"]
    if key == "WebSocketPingInterval":
        return {"status": "Rejected"}
    client.config[key] = (payload["value"], False)
    return {"status": "Accepted"}


async def test_a_baseline_applied_to_a_16_charger(server, charger):
    baseline = await sync_to_async(baselines.baseline_create)(
        organization=charger.organization,
        name="Wallbox",
        vendor="ACME",
        model="Wallbox",
        protocol="1.6",
        settings=[
            SettingIn(key="HeartbeatInterval", value="300"),
            SettingIn(key="MeterValueSampleInterval", value="60"),
            SettingIn(key="WebSocketPingInterval", value="30"),
            SettingIn(key="NumberOfConnectors", value="2"),
        ],
    )
    async with answering_charger(
        server.ocpp_url,
        charger.identity,
        {"GetConfiguration": configuration, "ChangeConfiguration": change},
    ) as client:
        client.config = {
            "HeartbeatInterval": ("300", False),
            "MeterValueSampleInterval": ("900", False),
            "NumberOfConnectors": ("1", True),
        }
        await boot(client)  # vendor ACME, model Wallbox
        fresh = await sync_to_async(Charger.objects.get)(pk=charger.pk)
        assert await sync_to_async(baselines.baseline_for)(fresh) == baseline

        def states() -> dict[str, str]:
            report = baselines.drift_report(charger=fresh, baseline=baseline)
            return {row.ref: row.state.value for row in report.rows}

        assert set((await sync_to_async(states)()).values()) == {"unknown"}
        await finished(
            await sync_to_async(baselines.baseline_read)(baseline=baseline, charger=fresh)
        )
        assert await sync_to_async(states)() == {
            "HeartbeatInterval": "matching",
            "MeterValueSampleInterval": "differing",
            "WebSocketPingInterval": "missing",
            "NumberOfConnectors": "differing",
        }

        commands = await sync_to_async(baselines.baseline_apply)(baseline=baseline, charger=fresh)
        # The read-only key is not sent.
        assert sorted(c.payload["key"] for c in commands) == [
            "MeterValueSampleInterval",
            "WebSocketPingInterval",
        ]
        for command in commands:
            await finished(command)
        await eventually(
            lambda: not BaselineResult.objects.filter(charger=fresh, status="").exists(),
            what="every answer recorded on the baseline",
        )

    report = await sync_to_async(baselines.drift_report)(charger=fresh, baseline=baseline)
    rows = {row.ref: row for row in report.rows}
    assert rows["MeterValueSampleInterval"].state.value == "matching"
    assert rows["MeterValueSampleInterval"].applied.status == "Accepted"
    assert rows["WebSocketPingInterval"].state.value == "missing"
    assert rows["WebSocketPingInterval"].refused
    assert rows["WebSocketPingInterval"].applied.status == "Rejected"
    assert rows["NumberOfConnectors"].readonly
    assert client.config["MeterValueSampleInterval"] == ("60", False)
