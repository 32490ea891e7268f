"""The dashboard's reservations: the Reserve form and active reservations on a charger's page,
the Reservations page, form errors, and who may reserve and cancel. The browser test
(tests/e2e/test_reservations_dashboard.py) watches them go live."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers.models import Charger, Command, Connector, Reservation
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "charger-reservations"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(name: str, organization: Organization, role: str) -> Client:
    user = User.objects.create_user(name)
    Membership.objects.create(user=user, organization=organization, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def cp16(make_charger: Any) -> Charger:
    charger = make_charger("CP-16", connected=True, ocpp_version="1.6", channel_name="specific.x!1")
    Connector.objects.create(charger=charger, connector_id=1, status="Available")
    return charger


def reserve(client: Client, charger: Charger, **data: Any) -> Any:
    form = {"connector": "1", "id_token": "TAG-OK", "minutes": "30", **data}
    return client.post(f"/chargers/{charger.pk}/reserve", form, headers=HTMX)


def test_an_operator_reserves_from_the_charger_page(organization, cp16, id_token):
    olga = member("olga", organization, Role.OPERATOR)
    page = olga.get(f"/chargers/{cp16.pk}/").content.decode()
    assert 'id="reserve-form"' in page
    assert "Any connector" in page
    response = reserve(olga, cp16)
    assert response.status_code == 200
    assert "Reservation 1 sent to CP-16." in response.content.decode()
    reservation = Reservation.objects.get()
    assert (reservation.connector_number, reservation.id_tag, reservation.state) == (
        1,
        "TAG-OK",
        "requested",
    )
    assert reservation.created_by.username == "olga"
    remaining = reservation.expires_at - timezone.now()
    assert timedelta(minutes=29) < remaining <= timedelta(minutes=30)
    assert Command.objects.get().action == "ReserveNow"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"id_token": "NOBODY"}, "not an id token of this organization"),
        ({"minutes": "0"}, "greater than or equal to 1"),
        ({"minutes": str(25 * 60)}, "less than or equal to 1440"),
        ({"connector": "0"}, "ReserveConnectorZeroSupported"),
        ({"connector": "9"}, "Select a valid choice"),
    ],
)
def test_form_errors_show_on_the_form(organization, cp16, id_token, data, words):
    response = reserve(member("olga", organization, Role.OPERATOR), cp16, **data)
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Reservation.objects.exists()


def test_an_offline_charger_is_refused_on_the_form(organization, cp16, id_token):
    Charger.objects.filter(pk=cp16.pk).update(connected=False)
    response = reserve(member("olga", organization, Role.OPERATOR), cp16)
    assert "CP-16 is offline; a reservation needs a connected charger." in (
        response.content.decode()
    )
    assert not Reservation.objects.exists()


def test_a_site_host_sees_reservations_but_neither_reserves_nor_cancels(
    organization, cp16, id_token
):
    olga = member("olga", organization, Role.OPERATOR)
    reserve(olga, cp16)
    reservation = Reservation.objects.get()
    Reservation.objects.update(state="active")
    host = member("hank", organization, Role.SITE_HOST)
    Membership.objects.get(user__username="hank").sites.set([cp16.site])
    page = host.get(f"/chargers/{cp16.pk}/").content.decode()
    assert 'id="reserve-form"' not in page
    assert f"reservation-{reservation.pk}" in page
    assert "Cancel reservation" not in page
    listed = host.get("/reservations/").content.decode()
    assert f"reservation-{reservation.pk}" in listed
    assert reserve(host, cp16).status_code == 403
    assert host.post(f"/reservations/{reservation.pk}/cancel").status_code == 403


def test_the_reservations_page_filters_by_state_and_cancels(organization, cp16, id_token):
    olga = member("olga", organization, Role.OPERATOR)
    reserve(olga, cp16)
    reservation = Reservation.objects.get()
    Reservation.objects.update(state="active")
    assert (
        f"reservation-{reservation.pk}" in olga.get("/reservations/?state=active").content.decode()
    )
    assert "No reservation expired." in olga.get("/reservations/?state=expired").content.decode()
    response = olga.post(f"/reservations/{reservation.pk}/cancel", {"back": "list"})
    assert response.status_code == 302
    assert response["Location"] == "/reservations/"
    assert Command.objects.filter(action="CancelReservation").count() == 1


def test_another_organization_never_reaches_them(organization, cp16, id_token):
    reserve(member("olga", organization, Role.OPERATOR), cp16)
    reservation = Reservation.objects.get()
    Reservation.objects.update(state="active")
    other = member("otto", Organization.objects.create(name="Other", slug="other"), Role.OPERATOR)
    assert f"reservation-{reservation.pk}" not in other.get("/reservations/").content.decode()
    assert other.post(f"/reservations/{reservation.pk}/cancel").status_code == 404
    assert other.post(f"/chargers/{cp16.pk}/reserve", {"id_token": "TAG-OK"}).status_code == 404
