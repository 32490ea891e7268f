"""The local list panel of a charger's dashboard page without a browser: what shows, the
actions' refusals (a charger that never connected, an offline one, a list too long) and who may
act."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers import services
from chargers.locallist_models import LocalListSync
from chargers.models import Charger, ChargerConfigurationKey, Command, Site
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db(transaction=True)
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "charger-local-list"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(
    name: str, organization: Organization, role: str, sites: tuple[Site, ...] = ()
) -> Client:
    user = User.objects.create_user(name)
    Membership.objects.create(user=user, organization=organization, role=role).sites.set(sites)
    client = Client()
    client.force_login(user)
    return client


def test_the_panel_shows_the_list_and_says_why_nothing_was_sent(organization, make_charger):
    charger = make_charger("LL-1", ocpp_version="1.6", connected=False)
    services.id_token_create(organization=organization, token="CARD-A", local_list=True)
    operator = member("olga", organization, Role.OPERATOR)
    page = operator.get(f"/chargers/{charger.pk}/")
    assert b"Local authorization list" in page.content
    assert b"Not synchronised yet" in page.content

    offline = operator.post(f"/chargers/{charger.pk}/local-list/sync", **HTMX)
    assert offline.status_code == 200
    assert b"is offline" in offline.content and b'role="alert"' in offline.content
    assert not Command.objects.exists()

    services.id_token_create(organization=organization, token="CARD-B", local_list=True)
    Charger.objects.filter(pk=charger.pk).update(connected=True, channel_name="specific.x!1")
    limit = ChargerConfigurationKey.objects.create(
        charger=charger, key="LocalAuthListMaxLength", value="1"
    )
    # The charger was asked before: it reported version 0.
    LocalListSync.objects.filter(charger=charger).update(reported_version=0)
    too_long = operator.post(f"/chargers/{charger.pk}/local-list/sync", **HTMX)
    assert b"2 entries but the charger holds at most 1" in too_long.content
    assert b"Too long for the charger" in too_long.content
    assert not Command.objects.exists()

    limit.value = "5"
    limit.save()
    sent = operator.post(f"/chargers/{charger.pk}/local-list/sync", **HTMX)
    assert b"on its way" in sent.content and b"Pending" in sent.content
    command = Command.objects.get(action="SendLocalList")
    assert command.payload["updateType"] == "Full"
    assert [item["idTag"] for item in command.payload["localAuthorizationList"]] == [
        "CARD-A",
        "CARD-B",
    ]


def test_a_charger_that_never_connected_is_refused(organization, make_charger):
    charger = make_charger("LL-NEW")
    operator = member("olga", organization, Role.OPERATOR)
    for action in ("sync", "check"):
        response = operator.post(f"/chargers/{charger.pk}/local-list/{action}", **HTMX)
        assert b"never connected" in response.content
    assert not Command.objects.exists()


def test_only_operators_of_the_organization_see_and_act(organization, make_charger, site):
    charger = make_charger("LL-2", ocpp_version="1.6", connected=True)
    host = member("hana", organization, Role.SITE_HOST, (site,))
    assert b"Local authorization list" not in host.get(f"/chargers/{charger.pk}/").content
    assert host.post(f"/chargers/{charger.pk}/local-list/sync").status_code == 403
    other = Organization.objects.create(name="Other", slug="other")
    stranger = member("otto", other, Role.OPERATOR)
    assert stranger.post(f"/chargers/{charger.pk}/local-list/check").status_code == 404
    assert not Command.objects.exists()
