"""Uptime from the stored histories: connection events and status changes of a charger become
its connectors' timelines; maintenance windows are left out; the API answers per connector,
charger or site and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from chargers.models import Charger, ChargerEvent, Connector, ConnectorStatusChange
from cpms.models import Role
from operations.models import MaintenanceWindow
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db

DAY_START = datetime(2026, 4, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY_START + timedelta(hours=hours)


@pytest.fixture
def world() -> World:
    world = build_world()
    charger = Charger.objects.get(identity="ACME-1")
    ChargerEvent.objects.filter(kind=ChargerEvent.Kind.CONNECTION).delete()
    ConnectorStatusChange.objects.all().delete()
    for when, status, detail in [
        (at(-1), "Connected", {}),
        (at(6), "Disconnected", {}),
        (at(7), "Disconnected", {"superseded": True}),  # an old socket closing late
        (at(8), "Connected", {}),
    ]:
        ChargerEvent.objects.create(
            charger=charger,
            kind=ChargerEvent.Kind.CONNECTION,
            status=status,
            timestamp=when,
            detail=detail,
        )
    connector = Connector.objects.get(charger=charger, connector_id=1)
    for when, status in [(at(-2), "Available"), (at(12), "Faulted"), (at(15), "Available")]:
        ConnectorStatusChange.objects.create(connector=connector, status=status, timestamp=when)
    return world


def get(world: World, **params):
    return world.client(Role.OPERATOR).get("/api/v1/uptime/", params)


def test_a_connector_day_with_an_outage_and_a_fault(world):
    response = get(world, start="2026-04-01", end="2026-04-02", charger="ACME-1")
    assert response.status_code == 200, response.content
    [row] = response.json()["rows"]
    assert (row["charger"], row["connector"]) == ("ACME-1", 1)
    assert (row["offline_seconds"], row["faulted_seconds"]) == (2 * 3600, 3 * 3600)
    assert row["uptime_percent"] == round(100 * 19 / 24, 3)
    assert [s["state"] for s in row["timeline"]] == ["up", "offline", "up", "faulted", "up"]


def test_maintenance_is_left_out(world):
    MaintenanceWindow.objects.create(
        organization=world.acme.organization,
        charger=Charger.objects.get(identity="ACME-1"),
        starts_at=at(11),
        ends_at=at(16),
        reason="Connector swap",
    )
    [row] = get(world, start="2026-04-01", end="2026-04-02", charger="ACME-1").json()["rows"]
    assert (row["faulted_seconds"], row["excluded_seconds"]) == (0, 5 * 3600)
    assert row["uptime_percent"] == round(100 * 17 / 19, 3)
    assert {"state": "excluded", "reason": "Connector swap"}.items() <= row["timeline"][3].items()


def test_site_totals_and_tenancy(world):
    rows = get(world, start="2026-04-01", end="2026-04-02", level="site").json()["rows"]
    assert sorted(row["site"] for row in rows) == ["Depot", "Harbour"]
    assert all(row["charger"] == "" for row in rows)
    other = (
        world.client(Role.OPERATOR, "other").get("/api/v1/uptime/", {"charger": "ACME-1"}).json()
    )
    assert other["rows"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-04-02", "end": "2026-04-01"}, "end"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "start"),
        ({"level": "planet"}, "level"),
        ({"level": ""}, "level"),
        ({"site": str(2**70)}, "site"),
    ],
)
def test_bad_queries_are_a_400_naming_the_parameter(world, params, field):
    response = get(world, **params)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_the_csv_report(world):
    response = world.client(Role.OPERATOR).get(
        "/api/v1/uptime/export.csv", {"start": "2026-04-01", "end": "2026-04-02"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    acme = next(row for row in rows if row["charger"] == "ACME-1")
    assert acme["uptime_percent"] == str(round(100 * 19 / 24, 3))
    assert acme["period_start"] == "2026-04-01T00:00:00+00:00"


def test_maintenance_windows_through_the_api(world):
    client = world.client(Role.OPERATOR)
    body = {
        "charger": "ACME-1",
        "starts_at": "2026-04-01T11:00:00Z",
        "ends_at": "2026-04-01T10:00:00Z",
        "reason": "Swap",
    }
    assert client.post("/api/v1/maintenance-windows/", body, format="json").status_code == 400
    body["ends_at"] = "2026-04-01T16:00:00Z"
    created = client.post("/api/v1/maintenance-windows/", body, format="json")
    assert created.status_code == 201, created.content
    assert MaintenanceWindow.objects.get().organization == world.acme.organization
    foreign = {**body, "charger": "OTHER-1"}
    assert client.post("/api/v1/maintenance-windows/", foreign, format="json").status_code == 400
    assert (
        world.client(Role.OPERATOR, "other").get("/api/v1/maintenance-windows/").json()["results"]
        == []
    )
