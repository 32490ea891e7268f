"""The site load page with the Django test client: what it shows, its forms and who may use them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers.models import Site
from cpms.celery import app as celery_app
from cpms.models import Organization, Role
from smartcharging.models import ChargerLoad, Circuit, LimitEvent, LimitSchedule, SiteCapacity
from tests.cpms.test_views import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def eager_tasks() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(organization: Organization) -> Client:
    return signed_in(make_user("op", organization, Role.OPERATOR))


def page(site: Site) -> str:
    return f"/sites/{site.pk}/load/"


def test_the_page_invites_to_set_the_grid_connection_first(operator: Client, site: Site) -> None:
    response = operator.get(page(site))
    assert response.status_code == 200
    assert "has no grid connection set yet" in response.content.decode()
    saved = operator.post(
        page(site) + "capacity",
        {"capacity-limit": "63", "capacity-limit_unit": "A", "capacity-phases": "3",
         "capacity-voltage": "230", "capacity-managed": "on"},
    )  # fmt: skip
    assert saved.status_code == 302
    assert SiteCapacity.objects.get(site=site).limit == Decimal("63")
    body = operator.get(page(site)).content.decode()
    assert "Site limit now" in body and "63.0 A" in body


def test_circuits_wiring_schedules_and_events_are_edited_on_the_page(
    operator: Client, site: Site, make_charger: Any
) -> None:
    SiteCapacity.objects.create(site=site, limit=63)
    make_charger("CP-1")
    assert (
        operator.post(
            page(site) + "circuit",
            {"circuit-name": "Garage", "circuit-limit_a": "16", "circuit-phases": "1"},
        ).status_code
        == 302
    )
    garage = Circuit.objects.get(site=site)
    wired = operator.post(
        page(site) + "charger",
        {"charger-charger": "CP-1", "charger-circuit": garage.pk, "charger-phase_rotation": "L3",
         "charger-max_current_a": "16", "charger-min_current_a": "6", "charger-rate_unit": "A",
         "charger-priority": "0"},
    )  # fmt: skip
    assert wired.status_code == 302
    load = ChargerLoad.objects.get(charger__identity="CP-1")
    assert (load.circuit, load.phase_rotation, load.pause_allowed) == (garage, "L3", False)
    assert operator.post(
        page(site) + "schedule",
        {"schedule-weekdays": ["1", "2"], "schedule-start_time": "17:00",
         "schedule-end_time": "21:00", "schedule-limit_a": "40"},
    ).status_code == 302  # fmt: skip
    assert LimitSchedule.objects.get(site=site).weekdays == [1, 2]
    # Event times are typed in the site's time zone (Europe/Amsterdam).
    created = operator.post(
        page(site) + "event",
        {"event-starts_at": "2030-01-10T17:00", "event-ends_at": "2030-01-10T19:00",
         "event-limit_a": "25", "event-reason": "Peak"},
    )  # fmt: skip
    assert created.status_code == 302
    event = LimitEvent.objects.get(site=site)
    assert event.starts_at == datetime(2030, 1, 10, 17, tzinfo=ZoneInfo("Europe/Amsterdam"))
    body = operator.get(page(site)).content.decode()
    assert "Garage" in body and "CP-1" in body and "Peak" in body
    assert operator.post(f"{page(site)}event/{event.pk}/delete").status_code == 302
    assert LimitEvent.objects.get(pk=event.pk).cancelled_at is not None
    assert operator.post(f"{page(site)}circuit/{garage.pk}/delete").status_code == 302
    assert not Circuit.objects.exists()


def test_bad_input_shows_form_errors(operator: Client, site: Site, make_charger: Any) -> None:
    backwards = operator.post(
        page(site) + "event",
        {"event-starts_at": "2030-01-10T19:00", "event-ends_at": "2030-01-10T17:00",
         "event-limit_a": "25"},
    )  # fmt: skip
    assert backwards.status_code == 400
    assert "An event must end after it starts." in backwards.content.decode()
    Circuit.objects.create(site=site, name="One", limit_a=16, phases=1)
    make_charger("CP-1")
    three = operator.post(
        page(site) + "charger",
        {"charger-charger": "CP-1", "charger-circuit": Circuit.objects.get().pk,
         "charger-phase_rotation": "L1L2L3", "charger-max_current_a": "16",
         "charger-min_current_a": "6", "charger-rate_unit": "A", "charger-priority": "0"},
    )  # fmt: skip
    assert three.status_code == 400
    assert "single-phase circuit" in three.content.decode()
    assert not LimitEvent.objects.exists() and not ChargerLoad.objects.exists()


def test_a_site_host_edits_their_site_only(organization: Organization, site: Site) -> None:
    other = Site.objects.create(organization=organization, name="Other")
    host = signed_in(make_user("host", organization, Role.SITE_HOST, sites=(site,)))
    assert host.get(page(site)).status_code == 200
    assert host.get(page(other)).status_code == 404
    assert (
        host.post(
            page(other) + "circuit", {"circuit-name": "X", "circuit-limit_a": "1"}
        ).status_code
        == 404
    )
    assert (
        host.post(
            page(site) + "circuit",
            {"circuit-name": "X", "circuit-limit_a": "10", "circuit-phases": "3"},
        ).status_code
        == 302
    )


def test_another_organization_sees_nothing(site: Site) -> None:
    stranger = Organization.objects.create(name="Other Co", slug="other")
    client = signed_in(make_user("stranger", stranger, Role.OPERATOR))
    assert client.get(page(site)).status_code == 404
