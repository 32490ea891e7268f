"""REST API of load management: per-site capacity, circuits, charger wiring, schedules,
demand-response events and the live load, with tenancy, roles and clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chargers.models import Command
from cpms.celery import app as celery_app
from cpms.models import Role
from smartcharging.models import ChargerLoad, Circuit, LimitEvent, SiteCapacity
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_tasks() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


def base(world: World, site: str = "Depot", tenancy: str = "acme") -> str:
    return f"/api/v1/sites/{getattr(world, tenancy).sites[site].pk}/"


def test_an_operator_sets_up_a_site_and_reads_its_load(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    client = world.client(Role.OPERATOR)
    url = base(world)
    assert client.get(url + "load/").status_code == 404
    response = client.put(
        url + "capacity/",
        {"limit": "63", "limit_unit": "A", "phases": 3, "managed": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["limit"] == "63.0"
    feeder = client.post(url + "circuits/", {"name": "Feeder", "limit_a": "40"}, format="json")
    assert feeder.status_code == 201, feeder.json()
    garage = client.post(
        url + "circuits/",
        {"name": "Garage", "limit_a": "16", "parent": feeder.json()["id"], "phases": 1},
        format="json",
    )
    assert garage.status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        wiring = client.put(
            url + "charger-loads/ACME-1/",
            {"circuit": garage.json()["id"], "phase_rotation": "L2", "max_current_a": "16"},
            format="json",
        )
    assert wiring.status_code == 200, wiring.json()
    assert ChargerLoad.objects.get(charger__identity="ACME-1").phase_rotation == "L2"
    listed = client.get(url + "charger-loads/").json()
    assert [(row["charger"], row["circuit"]) for row in listed] == [("ACME-1", garage.json()["id"])]
    load = client.get(url + "load/").json()
    assert (load["limit_a"], load["limit_source"], load["grid_limit_a"]) == (63.0, "grid", 63.0)
    # ACME-1 has an active session: the settings change rebalanced the site.
    (session,) = load["sessions"]
    assert session["charger"] == "ACME-1"
    assert session["allocated_a"] == 16.0
    assert load["history"] and load["history"][-1]["capacity_a"] == 63.0


def test_a_demand_response_event_caps_the_site_and_can_be_cancelled(world: World) -> None:
    SiteCapacity.objects.create(site=world.acme.sites["Depot"], limit=63)
    client = world.client(Role.SITE_HOST)
    url = base(world) + "limit-events/"
    now = timezone.now()
    created = client.post(
        url,
        {
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "limit_a": "20",
            "reason": "Grid operator peak",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["active"] is True
    load = client.get(base(world) + "load/").json()
    assert (load["limit_a"], load["limit_source"]) == (20.0, "event")
    assert client.get(url).json()["results"][0]["reason"] == "Grid operator peak"
    event_url = f"{url}{created.json()['id']}/"
    assert client.delete(event_url).status_code == 204
    assert client.delete(event_url).status_code == 400
    assert LimitEvent.objects.get().cancelled_at is not None
    assert client.get(base(world) + "load/").json()["limit_source"] == "grid"


def test_bad_input_gets_a_clear_error(world: World) -> None:
    client = world.client(Role.OPERATOR)
    url = base(world)
    now = timezone.now()
    backwards = client.post(
        url + "limit-events/",
        {"starts_at": now.isoformat(), "ends_at": now.isoformat(), "limit_a": "10"},
        format="json",
    )
    assert backwards.status_code == 400
    assert "ends_at" in str(backwards.json())
    negative = client.post(url + "circuits/", {"name": "X", "limit_a": "-1"}, format="json")
    assert negative.status_code == 400 and "limit_a" in str(negative.json())
    top = client.post(url + "circuits/", {"name": "Top", "limit_a": "40"}, format="json").json()
    below = client.post(
        url + "circuits/", {"name": "Below", "limit_a": "20", "parent": top["id"]}, format="json"
    ).json()
    loop = client.patch(url + f"circuits/{top['id']}/", {"parent": below["id"]}, format="json")
    assert loop.status_code == 400 and "below itself" in str(loop.json())
    twice = client.post(url + "circuits/", {"name": "Top", "limit_a": "10"}, format="json")
    assert twice.status_code == 400 and "already" in str(twice.json())
    # A circuit of another site cannot be a parent here.
    harbour = Circuit.objects.create(site=world.acme.sites["Harbour"], name="H", limit_a=10)
    foreign = client.post(
        url + "circuits/", {"name": "Y", "limit_a": "10", "parent": harbour.pk}, format="json"
    )
    assert foreign.status_code == 400
    single = client.post(
        url + "circuits/", {"name": "One", "limit_a": "16", "phases": 1}, format="json"
    ).json()
    three_on_one = client.put(
        url + "charger-loads/ACME-1/",
        {"circuit": single["id"], "phase_rotation": "L1L2L3"},
        format="json",
    )
    assert three_on_one.status_code == 400 and "single-phase" in str(three_on_one.json())
    inverted = client.patch(
        url + "charger-loads/ACME-1/", {"min_current_a": "20", "max_current_a": "16"}, format="json"
    )
    assert inverted.status_code == 400 and "minimum" in str(inverted.json())
    window = client.post(
        url + "limit-schedules/",
        {"weekdays": [8], "start_time": "17:00", "end_time": "21:00", "limit_a": "30"},
        format="json",
    )
    assert window.status_code == 400 and "weekdays" in str(window.json())
    assert client.get(url + "load/?minutes=0").status_code == 400


def test_a_schedule_window_is_kept_per_site(world: World) -> None:
    client = world.client(Role.OPERATOR)
    url = base(world) + "limit-schedules/"
    created = client.post(
        url,
        {
            "name": "Evening peak",
            "weekdays": [5, 1, 1],
            "start_time": "17:00",
            "end_time": "21:00",
            "limit_a": "30",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["weekdays"] == [1, 5]
    assert [w["name"] for w in client.get(url).json()] == ["Evening peak"]
    assert client.delete(f"{url}{created.json()['id']}/").status_code == 204
    assert client.get(url).json() == []


@pytest.mark.parametrize("role", [Role.OPERATOR_ADMIN, Role.OPERATOR, Role.SITE_HOST])
def test_editors_change_their_sites(world: World, role: str) -> None:
    response = world.client(role).post(
        base(world) + "circuits/", {"name": "F", "limit_a": "10"}, format="json"
    )
    assert response.status_code == 201


def test_integrators_only_read(world: World) -> None:
    client = world.client(Role.INTEGRATOR)
    assert client.get(base(world) + "circuits/").status_code == 200
    response = client.post(base(world) + "circuits/", {"name": "F", "limit_a": "10"}, format="json")
    assert response.status_code == 403


def test_no_one_reaches_a_site_outside_their_tenant(world: World) -> None:
    SiteCapacity.objects.create(site=world.other.sites["Yard"], limit=63)
    for path in ("circuits/", "load/", "limit-events/", "capacity/", "charger-loads/"):
        assert (
            world.client(Role.OPERATOR).get(base(world, "Yard", tenancy="other") + path).status_code
            == 404
        )
    # The site host looks after the Depot only.
    harbour = base(world, "Harbour")
    host = world.client(Role.SITE_HOST)
    assert host.get(harbour + "circuits/").status_code == 404
    assert host.post(harbour + "limit-events/", {}, format="json").status_code == 404


def test_the_schema_documents_the_site_load_endpoints(world: World) -> None:
    schema = world.client(Role.OPERATOR).get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/sites/{site_pk}/circuits/",
        "/api/v1/sites/{site_pk}/load/",
        "/api/v1/sites/{site_pk}/limit-events/",
        "/api/v1/sites/{site_pk}/capacity/",
    ):
        assert path in paths
    assert not Command.objects.exists()
