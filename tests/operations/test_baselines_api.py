"""The configuration baselines REST API and each charger's drift: create and validate
baselines, read a drift report, apply to one charger or a model; tenancy and roles."""

from __future__ import annotations

import pytest

from chargers.models import Charger, ChargerConfigurationKey, Command
from cpms.models import Role
from operations.models import ConfigurationBaseline
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db

URL = "/api/v1/configuration-baselines/"
BASELINE = {
    "name": "Wallbox 1.6",
    "vendor": "ACME",
    "model": "Wallbox",
    "protocol": "1.6",
    "settings": [
        {"key": "HeartbeatInterval", "value": "300"},
        {"key": "MeterValueSampleInterval", "value": "60"},
    ],
}


@pytest.fixture
def world() -> World:
    world = build_world()
    Charger.objects.filter(identity__in=["ACME-1", "OTHER-1"]).update(
        connected=True,
        ocpp_version="1.6",
        channel_name="specific.test!1",
        vendor="ACME",
        model="Wallbox",
    )
    Charger.objects.filter(identity="ACME-2").update(
        connected=False, ocpp_version="1.6", vendor="ACME", model="Wallbox"
    )
    return world


def create(world: World, body=BASELINE, role=Role.OPERATOR):
    return world.client(role).post(URL, body, format="json")


def test_an_operator_creates_a_baseline_and_reads_it_back(world):
    response = create(world)
    assert response.status_code == 201, response.content
    body = response.json()
    assert [(s["ref"], s["value"]) for s in body["settings"]] == [
        ("HeartbeatInterval", "300"),
        ("MeterValueSampleInterval", "60"),
    ]
    listed = world.client(Role.OPERATOR).get(URL).json()["results"]
    assert [b["name"] for b in listed] == ["Wallbox 1.6"]
    assert world.client(Role.OPERATOR, "other").get(f"{URL}{body['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([{"component_name": "X", "variable_name": "Y", "value": "1"}], "key only"),
        ([{"key": "A", "value": "1"}, {"key": "A", "value": "2"}], "set twice"),
        ([{"value": "1"}], "key only"),
    ],
)
def test_bad_settings_are_a_400_naming_the_item(world, settings, message):
    response = create(world, {**BASELINE, "settings": settings})
    assert response.status_code == 400
    assert message in str(response.json())
    assert not ConfigurationBaseline.objects.exists()


def test_a_second_baseline_for_the_same_model_is_a_409(world):
    assert create(world).status_code == 201
    response = create(world, {**BASELINE, "name": "again", "vendor": "ACME"})
    assert response.status_code == 409
    assert "already" in response.json()["error"]["message"]


def test_the_protocol_of_a_baseline_is_fixed(world):
    pk = create(world).json()["id"]
    response = world.client(Role.OPERATOR).patch(f"{URL}{pk}/", {"protocol": "2.x"}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize("role", [Role.SITE_HOST, Role.INTEGRATOR])
def test_other_roles_may_not_touch_baselines(world, role):
    assert world.client(role).get(URL).status_code == 403
    assert create(world, role=role).status_code == 403


def test_the_drift_report_and_applying_to_one_charger(world):
    create(world)
    ChargerConfigurationKey.objects.create(
        charger=Charger.objects.get(identity="ACME-1"), key="HeartbeatInterval", value="300"
    )
    client = world.client(Role.OPERATOR)
    report = client.get("/api/v1/chargers/ACME-1/configuration-drift/").json()
    assert report["counts"] == {"matching": 1, "differing": 0, "missing": 1, "unknown": 0}
    assert [row["state"] for row in report["rows"]] == ["matching", "missing"]
    applied = client.post("/api/v1/chargers/ACME-1/configuration-drift/apply/")
    assert applied.status_code == 202, applied.content
    [command] = Command.objects.filter(pk__in=applied.json()["commands"])
    assert command.payload == {"key": "MeterValueSampleInterval", "value": "60"}
    offline = client.post("/api/v1/chargers/ACME-2/configuration-drift/apply/")
    assert offline.status_code == 409
    assert "offline" in offline.json()["error"]["message"]
    read = client.post("/api/v1/chargers/ACME-1/configuration-drift/read/")
    assert read.status_code == 202
    assert Command.objects.get(pk=read.json()["commands"][0]).action == "GetConfiguration"


def test_a_charger_no_baseline_covers(world):
    client = world.client(Role.OPERATOR)
    report = client.get("/api/v1/chargers/ACME-1/configuration-drift/").json()
    assert (report["baseline"], report["rows"]) == (None, [])
    assert client.post("/api/v1/chargers/ACME-1/configuration-drift/apply/").status_code == 409
    # Another organization's charger is not found.
    assert client.get("/api/v1/chargers/OTHER-1/configuration-drift/").status_code == 404


def test_applying_to_the_whole_model(world, django_capture_on_commit_callbacks, celery_inline):
    pk = create(world).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = world.client(Role.OPERATOR).post(f"{URL}{pk}/apply/")
    assert response.status_code == 202
    assert response.json() == {"chargers": 2}
    assert set(Command.objects.values_list("charger__identity", flat=True)) == {"ACME-1", "ACME-2"}
