"""The journal exports stream from the real ASGI server: chunked, never built whole in memory."""

from __future__ import annotations

import csv
import http.client
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from chargers.models import Charger, Frame
from cpms.models import Role
from cpms.services import api_token_create
from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

ROWS = 3000


def _journal(charger: Charger) -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    Frame.objects.bulk_create(
        Frame(
            charger=charger,
            charger_identity=charger.identity,
            direction=Frame.Direction.IN,
            kind=Frame.Kind.CALL,
            message_id=f"m{n:05d}",
            action="Heartbeat" if n % 2 else "MeterValues",
            raw=json.dumps([2, f"m{n:05d}", "Heartbeat" if n % 2 else "MeterValues", {}]),
            timestamp=start + timedelta(seconds=n),
        )
        for n in range(ROWS)
    )


def _get(server: ServerProcess, path: str, key: str) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", path, headers={"Authorization": f"Token {key}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


@pytest.mark.parametrize("file_format", ["ndjson", "csv"])
def test_an_export_is_sent_in_chunks(
    server: ServerProcess, charger: Charger, file_format: str
) -> None:
    _journal(charger)
    _, key = api_token_create(organization=charger.organization, name="export", role=Role.OPERATOR)
    response, body = _get(server, f"/api/v1/frames/export.{file_format}?action=MeterValues", key)
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    text = body.decode()
    if file_format == "ndjson":
        ids = [json.loads(line)["message_id"] for line in text.splitlines()]
    else:
        ids = [row["message_id"] for row in csv.DictReader(io.StringIO(text))]
    assert ids == [f"m{n:05d}" for n in range(0, ROWS, 2)]


def test_an_export_error_is_json_from_the_real_server(
    server: ServerProcess, charger: Charger
) -> None:
    _, key = api_token_create(organization=charger.organization, name="export", role=Role.OPERATOR)
    response, body = _get(server, "/api/v1/frames/export.csv?since=not-a-time", key)
    assert response.status == 400
    assert json.loads(body)["error"]["details"]["since"][0]["code"] == "invalid"
