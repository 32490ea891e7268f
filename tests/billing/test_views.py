"""The tariff pages with Django's test client: the editor refuses what the API refuses, site hosts
see and edit their own sites' tariffs only, publishing, assigning and the simulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing import services
from billing.models import Tariff, TariffAssignment
from chargers.models import Site
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def harbour(organization: Organization) -> Site:
    return Site.objects.create(
        organization=organization, name="Harbour", time_zone="Europe/Amsterdam"
    )


def member(organization: Organization, role: str, sites: tuple[Site, ...] = ()) -> Client:
    user = User.objects.create_user(f"{role}-user", password="pw")
    membership = Membership.objects.create(user=user, organization=organization, role=role)
    membership.sites.set(sites)
    client = Client()
    client.force_login(user)
    return client


def editor_data(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "element-TOTAL_FORMS": str(len(rows)),
        "element-INITIAL_FORMS": str(len(rows)),
        "element-MIN_NUM_FORMS": "0",
        "element-MAX_NUM_FORMS": "1000",
        "parking_grace_minutes": "0",
        "example-day": "1",
        "example-at": "18:00",
        "example-energy_kwh": "22",
        "example-hours": "2",
        "example-idle_minutes": "0",
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"element-{index}-{key}"] = value
    data.update(extra)
    return data


TIME_OF_USE = [
    {"energy_price": "0.40", "vat": "19", "start_time": "17:00", "end_time": "21:00"},
    {"energy_price": "0.25", "parking_price": "6.00", "vat": "19"},
    {"vat": "19"},
]


def test_a_site_host_creates_a_time_of_use_tariff_with_an_idle_fee(
    organization: Organization, site: Site
) -> None:
    client = member(organization, Role.SITE_HOST, (site,))
    page = client.get("/tariffs/new/")
    assert page.status_code == 200
    assert b"Tariffs" in page.content
    response = client.post(
        "/tariffs/new/",
        editor_data(TIME_OF_USE, name="Depot peak", site=str(site.pk), parking_grace_minutes="30"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    tariff = Tariff.objects.get()
    assert (tariff.site, tariff.currency) == (site, "EUR")
    draft = tariff.versions.get()
    assert draft.parking_grace_seconds == 1800
    assert draft.elements == [
        {
            "price_components": [{"type": "ENERGY", "price": "0.4", "vat": "19", "step_size": 1}],
            "restrictions": {"start_time": "17:00", "end_time": "21:00"},
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.25", "vat": "19", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6", "vat": "19", "step_size": 1},
            ]
        },
    ]
    detail = client.get(f"/tariffs/{tariff.pk}/")
    assert "0.40 EUR per kWh (VAT 19 %)" in detail.content.decode()

    # Publish, then assign to the site.
    published = client.post(f"/tariffs/{tariff.pk}/publish", {"effective_from": ""})
    assert published.status_code == 302
    assert tariff.versions.get().state == "published"
    assigned = client.post(
        f"/tariffs/{tariff.pk}/assign", {"target": f"site:{site.pk}", "price_group": ""}
    )
    assert assigned.status_code == 302
    assert TariffAssignment.objects.get().site == site


def test_the_live_example_prices_the_form_as_it_stands(
    organization: Organization, site: Site
) -> None:
    client = member(organization, Role.SITE_HOST, (site,))
    # Tuesday 18:00-20:00 local, 22 kWh, in the peak: 8.80 + 19 % VAT (1.67) = 10.47.
    response = client.post("/tariffs/example", editor_data(TIME_OF_USE, site=str(site.pk)))
    assert response.status_code == 200
    text = response.content.decode()
    assert "A 22 kWh, 2 h session on Tuesday" in text
    assert "costs 10.47 EUR including VAT (8.80 EUR excluding VAT)" in text
    # Nothing was saved.
    assert not Tariff.objects.exists()
    # A broken tariff gets a hint instead.
    bad = editor_data([{"energy_price": "-1", "vat": "19"}], site=str(site.pk))
    assert "Correct the tariff" in client.post("/tariffs/example", bad).content.decode()


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"energy_price": "-0.10", "vat": "19"}], {}, "greater than or equal to 0"),
        ([{"energy_price": "0.30", "vat": "120"}], {}, "less than or equal to 100"),
        (
            [
                {"energy_price": "0.40", "vat": "19", "start_time": "17:00", "end_time": "21:00"},
                {"energy_price": "0.30", "vat": "19", "start_time": "20:00", "end_time": "23:00"},
            ],
            {},
            "Overlaps element 0 for ENERGY",
        ),
        (
            [{"energy_price": "0.30", "vat": "19", "min_kwh": "20", "max_kwh": "10"}],
            {},
            "max_kwh must be above min_kwh",
        ),
        (
            [{"energy_price": "0.30", "vat": "19"}],
            {"min_price": "5", "max_price": "1"},
            "below the minimum price",
        ),
        ([{"vat": "19"}], {}, "Give at least one price"),
    ],
)
def test_bad_tariffs_are_refused_in_the_editor_and_nothing_is_saved(
    organization: Organization,
    site: Site,
    rows: list[dict[str, Any]],
    extra: dict[str, Any],
    message: str,
) -> None:
    client = member(organization, Role.OPERATOR)
    response = client.post(
        "/tariffs/new/", editor_data(rows, name="Bad", site=str(site.pk), **extra)
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Tariff.objects.exists()


def test_site_hosts_cannot_reach_another_hosts_site(
    organization: Organization, site: Site, harbour: Site
) -> None:
    theirs = services.tariff_create(
        organization=organization,
        name="Harbour",
        currency="EUR",
        site=harbour,
        elements=[{"price_components": [{"type": "ENERGY", "price": "0.3", "vat": "19"}]}],
    )
    client = member(organization, Role.SITE_HOST, (site,))
    assert client.get(f"/tariffs/{theirs.pk}/").status_code == 404
    assert client.get(f"/tariffs/{theirs.pk}/edit/").status_code == 404
    assert client.post(f"/tariffs/{theirs.pk}/publish", {}).status_code == 404
    assert "Harbour" not in client.get("/tariffs/").content.decode()
    # Creating one for the Harbour: the site is not among the choices.
    response = client.post(
        "/tariffs/new/", editor_data(TIME_OF_USE, name="Mine", site=str(harbour.pk))
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Tariff.objects.count() == 1


def test_editing_a_published_tariff_makes_a_new_draft_version(
    organization: Organization, site: Site
) -> None:
    tariff = services.tariff_create(
        organization=organization,
        name="Depot",
        currency="EUR",
        site=site,
        elements=[{"price_components": [{"type": "ENERGY", "price": "0.3", "vat": "19"}]}],
    )
    services.tariff_publish(version=tariff.versions.get())
    client = member(organization, Role.OPERATOR)
    page = client.get(f"/tariffs/{tariff.pk}/edit/")
    assert page.status_code == 200
    assert 'value="0.3000"' in page.content.decode() or 'value="0.3"' in page.content.decode()
    response = client.post(
        f"/tariffs/{tariff.pk}/edit/",
        editor_data([{"energy_price": "0.35", "vat": "19"}, {"vat": "19"}]),
    )
    assert response.status_code == 302
    first, second = tariff.versions.order_by("number")
    assert first.state == "published" and first.elements[0]["price_components"][0]["price"] == "0.3"
    assert second.state == "draft" and second.elements[0]["price_components"][0]["price"] == "0.35"
    simulator = client.get(f"/tariffs/{tariff.pk}/simulate/")
    assert simulator.status_code == 200
    assert "No completed session at this site yet" in simulator.content.decode()
    # Publishing in the past is refused with the reason.
    past = client.post(f"/tariffs/{tariff.pk}/publish", {"effective_from": "2020-01-01T10:00"})
    assert past.status_code == 400
    assert "cannot take effect in the past" in past.content.decode()
    assert tariff.versions.filter(state="draft").exists()
    assert Decimal(second.elements[0]["price_components"][0]["price"]) == Decimal("0.35")
