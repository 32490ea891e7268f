"""``/metrics``: django-prometheus's HTTP metrics and the OCPP gauges and counters of the server
process, scraped from a real daphne process while a charger is connected over a real socket."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from typing import Any

import pytest
import websockets
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from chargers.models import Charger
from tests.conftest import CHARGER_PASSWORD, ServerProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ServerProcess) -> Samples:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def frames(samples: Samples, direction: str, action: str, message_type: str) -> float:
    return value(
        samples,
        "cpms_ocpp_frames_total",
        direction=direction,
        action=action,
        message_type=message_type,
    )


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there"
        time.sleep(0.05)


@pytest.mark.e2e
async def test_metrics_count_a_charger_and_its_frames(
    server: ServerProcess, charger: Charger
) -> None:
    before = scrape(server)
    auth = base64.b64encode(f"{charger.identity}:{CHARGER_PASSWORD}".encode()).decode()
    async with websockets.connect(
        server.ocpp_url + charger.identity,
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
    ) as ws:
        await ws.send(
            json.dumps(
                [
                    2,
                    "boot-1",
                    "BootNotification",
                    {"chargePointVendor": "V", "chargePointModel": "M"},
                ]
            )
        )
        assert json.loads(await ws.recv())[0] == 3
        await ws.send(json.dumps([2, "odd-1", "NoSuchAction", {}]))
        error = json.loads(await ws.recv())
        assert error[:3] == [4, "odd-1", "NotImplemented"]

        during = scrape(server)
        connected = value(during, "cpms_ocpp_connected_chargers")
        assert connected == value(before, "cpms_ocpp_connected_chargers") + 1
        assert (
            frames(during, "in", "BootNotification", "call")
            == frames(before, "in", "BootNotification", "call") + 1
        )
        assert (
            frames(during, "out", "BootNotification", "result")
            == frames(before, "out", "BootNotification", "result") + 1
        )
        # An action no OCPP version knows is counted, under a bounded label.
        assert (
            frames(during, "in", "unknown", "call") == frames(before, "in", "unknown", "call") + 1
        )
        assert value(during, "cpms_ocpp_call_errors_sent_total", code="NotImplemented") == (
            value(before, "cpms_ocpp_call_errors_sent_total", code="NotImplemented") + 1
        )

    wait_for(lambda: value(scrape(server), "cpms_ocpp_connected_chargers") == connected - 1)
    after = scrape(server)
    # django-prometheus's own request metrics are there too.
    assert any(name == "django_http_requests_total_by_method_total" for name, _ in after)


def test_metrics_can_ask_for_a_bearer_token(db: Any) -> None:
    client = Client()
    with override_settings(CPMS_METRICS_TOKEN="scrape-secret"):
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
        assert allowed.status_code == 200
        assert b"cpms_ocpp_connected_chargers" in allowed.content
    assert client.get("/metrics").status_code == 200


def test_health_probes_still_answer(db: Any) -> None:
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "channel_layer": "ok"}
