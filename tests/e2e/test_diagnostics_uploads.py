"""Diagnostics and log retrieval against the real server: the CPMS asks a charger for a file
with an upload URL of its own, the charger sends the file there over HTTP (a multipart POST or a
PUT), its status notifications are followed, and operators download the file through the API."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from chargers import uploads
from chargers.models import Charger, Command, Connector, DiagnosticsFile
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from cpms.models import Organization, Role
from cpms.services import api_token_create
from tests.conftest import CHARGER_PASSWORD, ServerProcess
from tests.e2e.commanding import eventually
from tests.e2e.test_firmware_campaigns import celery_worker  # noqa: F401 - a worker with Redis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def remove_stored_files(transactional_db: Any) -> Iterator[None]:
    yield
    for record in DiagnosticsFile.objects.exclude(file=""):
        record.file.delete(save=False)


@pytest.fixture
def operator_key(organization: Organization) -> str:
    return api_token_create(organization=organization, name="ops", role=Role.OPERATOR)[1]


@asynccontextmanager
async def simulated(
    server: ServerProcess, charger: Charger, protocol: str = "ocpp1.6", upload_files: bool = True
) -> AsyncIterator[SimulatedCharger]:
    config = FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=1,
        sessions_per_hour=0,
        reconnect=False,
        call_timeout=30,
        protocol=protocol,
        upload_files=upload_files,
    )
    cls = SimulatedCharger if protocol == "ocpp1.6" else SimulatedCharger201
    sim = cls(charger.identity, config, Stats(), random.Random(1))
    task = asyncio.create_task(sim.run_once())
    try:
        await eventually(
            lambda: Connector.objects.filter(
                charger=charger, connector_id=1, status="Available"
            ).exists(),
            timeout=120,
            what="the simulated charger booted",
        )
        yield sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def api(server: ServerProcess, key: str, method: str, path: str, data: Any = None) -> Any:
    body = json.dumps(data).encode() if data is not None else None
    status, content, _ = http(
        method,
        server.http_url + path,
        body,
        {"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    return status, json.loads(content) if content else None


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def uploaded(pk: int) -> DiagnosticsFile | None:
    return DiagnosticsFile.objects.filter(pk=pk, state="uploaded", status="Uploaded").first()


async def test_a_16_charger_uploads_its_diagnostics_where_the_api_said(
    server, make_charger, operator_key
):
    charger = await sync_to_async(make_charger)("DIAG-16")
    async with simulated(server, charger):
        status, body = await sync_to_async(api)(
            server,
            operator_key,
            "POST",
            f"/api/v1/chargers/{charger.identity}/diagnostics/",
            {"kind": "diagnostics", "start_time": "2030-01-01T00:00:00Z"},
        )
        assert status == 202, body
        assert body["state"] == "requested"
        record = await eventually(
            lambda: uploaded(body["id"]), timeout=90, what="diagnostics uploaded"
        )
        command = await sync_to_async(Command.objects.get)(pk=body["command"])
    assert command.action == "GetDiagnostics"
    location = command.payload["location"]
    assert location.startswith(server.http_url + "/uploads/")
    assert command.payload["startTime"] == "2030-01-01T00:00:00Z"
    assert record.file_name == "diagnostics-DIAG-16.log"
    status, listed = await sync_to_async(api)(
        server, operator_key, "GET", f"/api/v1/diagnostics/?charger={charger.identity}"
    )
    assert status == 200
    assert [(r["id"], r["state"], r["size"]) for r in listed["results"]] == [
        (record.pk, "uploaded", record.size)
    ]
    status, content, headers = await sync_to_async(http)(
        "GET",
        server.http_url + listed["results"][0]["download"],
        headers={"Authorization": f"Token {operator_key}"},
    )
    assert status == 200
    assert content.startswith(b"Simulated diagnostics-DIAG-16.log of DIAG-16 at ")
    assert 'filename="diagnostics-DIAG-16.log"' in headers["Content-Disposition"]


async def test_a_201_charger_puts_its_security_log(server, make_charger, operator_key):
    charger = await sync_to_async(make_charger)("LOG-201")
    async with simulated(server, charger, protocol="ocpp2.0.1"):
        status, body = await sync_to_async(api)(
            server,
            operator_key,
            "POST",
            f"/api/v1/chargers/{charger.identity}/diagnostics/",
            {"kind": "SecurityLog"},
        )
        assert status == 202, body
        record = await eventually(lambda: uploaded(body["id"]), timeout=90, what="log uploaded")
        command = await sync_to_async(Command.objects.get)(pk=body["command"])
    assert command.action == "GetLog"
    assert command.payload["logType"] == "SecurityLog"
    assert command.payload["requestId"] == record.request_id == record.pk
    assert record.file_name == f"SecurityLog-{record.pk}.log"
    assert record.file.read().startswith(f"Simulated SecurityLog-{record.pk}.log".encode())


async def test_a_client_posts_and_puts_a_file_to_the_url_the_cpms_issued(
    server, make_charger, operator_key
):
    charger = await sync_to_async(make_charger)("DIAG-HTTP")
    async with simulated(server, charger, upload_files=False):
        record = await sync_to_async(uploads.diagnostics_request)(
            charger=charger, kind="diagnostics", base_url=server.http_url
        )
        command = await sync_to_async(Command.objects.get)(pk=record.command_id)
        url = command.payload["location"]

        first = b"\x1f\x8b" + bytes(range(256)) * 40
        body, content_type = multipart("diag.tar.gz", first)
        status, answer, _ = await sync_to_async(http)(
            "POST", url, body, {"Content-Type": content_type}
        )
        assert (status, json.loads(answer)) == (201, {"stored": "diag.tar.gz", "size": len(first)})
        stored = await sync_to_async(DiagnosticsFile.objects.get)(pk=record.pk)
        assert stored.file.read() == first
        assert stored.content_type == "application/gzip"

        # A charger's retry, as a PUT with its own file name, replaces the file.
        second = b"second attempt\n"
        status, _, _ = await sync_to_async(http)(
            "PUT", url + "retry.log", second, {"Content-Type": "text/plain"}
        )
        assert status == 201
        stored = await sync_to_async(DiagnosticsFile.objects.get)(pk=record.pk)
        assert (stored.file.read(), stored.size, stored.state) == (second, len(second), "uploaded")

        status, _, headers = await sync_to_async(http)("GET", url)
        assert status == 405
        assert headers["Allow"] == "POST, PUT"
        wrong = url.replace("/uploads/", "/uploads/x")
        status, answer, _ = await sync_to_async(http)("PUT", wrong, b"data")
        assert status == 404
        assert json.loads(answer)["error"]["message"] == "Unknown upload URL."

        await sync_to_async(
            lambda: DiagnosticsFile.objects.filter(pk=record.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            )
        )()
        status, answer, _ = await sync_to_async(http)("PUT", url, b"too late")
        assert status == 410
        assert json.loads(answer)["error"]["code"] == "expired"
    stored = await sync_to_async(DiagnosticsFile.objects.get)(pk=record.pk)
    assert stored.file.read() == second
