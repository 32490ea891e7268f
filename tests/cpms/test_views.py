"""Tenancy of the dashboard: every page, every role.

Another organization's objects never show in a list and are a 404 by guessed id; a site host sees
only the chargers, sessions and sites they look after and no id tokens; integrators and users
without a membership get a 403 page that says why; anonymous visitors are sent to sign in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers.models import Charger, Frame, IdToken, Session, Site
from cpms.models import ApiToken, Membership, Organization, Role
from cpms.services import api_token_create

PASSWORD = "dashboard-test-password"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Users here sign in with force_login; hashing their passwords at full cost is only slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    acme: Organization
    depot: Site
    harbour: Site
    depot_charger: Charger
    harbour_charger: Charger
    depot_session: Session
    harbour_session: Session
    id_token: IdToken
    api_token: ApiToken
    globex: Organization
    globex_site: Site
    globex_charger: Charger
    globex_session: Session
    globex_id_token: IdToken
    globex_api_token: ApiToken
    users: dict[str, User]


def make_user(
    name: str, organization: Organization | None, role: str, sites: tuple[Site, ...] = ()
) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
    if organization is not None:
        membership = Membership.objects.create(user=user, organization=organization, role=role)
        membership.sites.set(sites)
    return user


def make_session(charger: Charger, transaction_id: str, **fields: Any) -> Session:
    defaults: dict[str, Any] = {
        "started_at": timezone.now() - timedelta(minutes=30),
        "meter_start_wh": Decimal(1000),
        "energy_wh": Decimal(2500),
        "id_tag": f"TAG-{transaction_id}",
    }
    defaults.update(fields)
    return Session.objects.create(
        charger=charger,
        transaction_id=transaction_id,
        start_key=f"key-{transaction_id}",
        **defaults,
    )


def make_frame(charger: Charger, action: str, direction: str = "in", kind: int = 2) -> Frame:
    return Frame.objects.create(
        charger=charger,
        charger_identity=charger.identity,
        direction=direction,
        kind=kind,
        message_id=f"m-{action}",
        action=action,
        raw=f'[{kind},"m-{action}","{action}",{{}}]',
    )


def build_world(organization: Organization, site: Site, make_charger: Any) -> World:
    harbour = Site.objects.create(
        organization=organization,
        name="Harbour",
        time_zone="Europe/Amsterdam",
        latitude=Decimal("52.1"),
        longitude=Decimal("4.3"),
    )
    depot_charger = make_charger("ACME-DEPOT-1", vendor="Alfen", ocpp_version="1.6")
    harbour_charger = make_charger("ACME-HARBOUR-1", vendor="ABB", site=harbour)
    globex = Organization.objects.create(name="Globex Energy", slug="globex")
    globex_site = Site.objects.create(organization=globex, name="Globex Yard")
    globex_charger = Charger.objects.create(
        identity="GLOBEX-1", organization=globex, site=globex_site
    )
    for charger in (depot_charger, harbour_charger, globex_charger):
        make_frame(charger, "BootNotification")
    users = {
        "admin": make_user("admin", organization, Role.OPERATOR_ADMIN),
        "operator": make_user("operator", organization, Role.OPERATOR),
        "host": make_user("host", organization, Role.SITE_HOST, (site,)),
        "integrator": make_user("integrator", organization, Role.INTEGRATOR),
        "nobody": make_user("nobody", None, ""),
        "outsider": make_user("outsider", globex, Role.OPERATOR_ADMIN),
    }
    return World(
        acme=organization,
        depot=site,
        harbour=harbour,
        depot_charger=depot_charger,
        harbour_charger=harbour_charger,
        depot_session=make_session(depot_charger, "101"),
        harbour_session=make_session(harbour_charger, "202"),
        id_token=IdToken.objects.create(organization=organization, token="ACME-TAG"),
        api_token=api_token_create(organization=organization, name="acme-billing")[0],
        globex=globex,
        globex_site=globex_site,
        globex_charger=globex_charger,
        globex_session=make_session(globex_charger, "303"),
        globex_id_token=IdToken.objects.create(organization=globex, token="GLOBEX-TAG"),
        globex_api_token=api_token_create(organization=globex, name="globex-billing")[0],
        users=users,
    )


@pytest.fixture
def world(organization: Organization, site: Site, make_charger: Any) -> World:
    return build_world(organization, site, make_charger)


def client_for(world: World, name: str) -> Client:
    client = Client()
    client.force_login(world.users[name])
    return client


@dataclass(frozen=True)
class ListPage:
    url: str
    # The marker texts of the world's objects this page lists: (acme depot, acme harbour, globex).
    markers: tuple[str, str, str]
    site_host: bool = True
    operators_only: bool = False
    admins_only: bool = False


LIST_PAGES = [
    ListPage("/", ("ACME-DEPOT-1", "ACME-HARBOUR-1", "GLOBEX-1")),
    ListPage("/chargers/", ("ACME-DEPOT-1", "ACME-HARBOUR-1", "GLOBEX-1")),
    ListPage("/sessions/", ("TAG-101", "TAG-202", "TAG-303")),
    ListPage("/sites/", ("Depot", "Harbour", "Globex Yard")),
    ListPage("/id-tokens/", ("ACME-TAG", "ACME-TAG", "GLOBEX-TAG"), operators_only=True),
    ListPage("/api-tokens/", ("acme-billing", "acme-billing", "globex-billing"), admins_only=True),
]


def _overview_shows_all(world: World) -> None:
    # The overview lists chargers only when they need attention: make every one of them offline.
    Charger.objects.update(connected=False)


@pytest.mark.parametrize("list_page", LIST_PAGES, ids=lambda p: p.url)
@pytest.mark.parametrize("role", ["admin", "operator", "host"])
def test_list_pages_show_only_the_tenants_objects(
    world: World, list_page: ListPage, role: str
) -> None:
    _overview_shows_all(world)
    response = client_for(world, role).get(list_page.url)
    allowed = not (
        (list_page.admins_only and role != "admin") or (list_page.operators_only and role == "host")
    )
    if not allowed:
        assert response.status_code == 403
        assert "No access" in response.content.decode()
        return
    assert response.status_code == 200
    body = response.content.decode()
    depot, harbour, globex = list_page.markers
    assert depot in body
    assert globex not in body
    if role == "host":
        assert harbour not in body
    else:
        assert harbour in body


def _detail_urls(world: World) -> dict[str, dict[str, str]]:
    """Detail pages: the depot's (every role may open), the harbour's and Globex's objects."""
    return {
        "charger": {
            "depot": f"/chargers/{world.depot_charger.pk}/",
            "harbour": f"/chargers/{world.harbour_charger.pk}/",
            "globex": f"/chargers/{world.globex_charger.pk}/",
        },
        "charger row": {
            "depot": f"/chargers/{world.depot_charger.pk}/row",
            "harbour": f"/chargers/{world.harbour_charger.pk}/row",
            "globex": f"/chargers/{world.globex_charger.pk}/row",
        },
        "frame log": {
            "depot": f"/chargers/{world.depot_charger.pk}/frames/",
            "harbour": f"/chargers/{world.harbour_charger.pk}/frames/",
            "globex": f"/chargers/{world.globex_charger.pk}/frames/",
        },
        "session": {
            "depot": f"/sessions/{world.depot_session.pk}/",
            "harbour": f"/sessions/{world.harbour_session.pk}/",
            "globex": f"/sessions/{world.globex_session.pk}/",
        },
        "site": {
            "depot": f"/sites/{world.depot.pk}/",
            "harbour": f"/sites/{world.harbour.pk}/",
            "globex": f"/sites/{world.globex_site.pk}/",
        },
    }


DETAIL_KINDS = ["charger", "charger row", "frame log", "session", "site"]


@pytest.mark.parametrize("kind", DETAIL_KINDS)
@pytest.mark.parametrize("role", ["admin", "operator", "host"])
def test_detail_pages_of_other_tenants_are_404(world: World, kind: str, role: str) -> None:
    urls = _detail_urls(world)[kind]
    client = client_for(world, role)
    assert client.get(urls["depot"]).status_code == 200
    assert client.get(urls["globex"]).status_code == 404
    assert client.get(urls["harbour"]).status_code == (404 if role == "host" else 200)


def test_a_missing_object_is_the_same_404_as_another_tenants(world: World) -> None:
    client = client_for(world, "operator")
    missing = client.get("/chargers/999999/")
    foreign = client.get(f"/chargers/{world.globex_charger.pk}/")
    assert missing.status_code == foreign.status_code == 404
    assert "GLOBEX" not in foreign.content.decode()


def test_the_frame_log_never_shows_another_tenants_frames(world: World) -> None:
    body = (
        client_for(world, "operator").get(f"/chargers/{world.depot_charger.pk}/").content.decode()
    )
    assert "BootNotification" in body
    assert "GLOBEX-1" not in body


ALL_PAGES = [page.url for page in LIST_PAGES] + ["/id-tokens/new/"]


@pytest.mark.parametrize("url", ALL_PAGES)
def test_integrators_get_a_403_page_that_says_why(world: World, url: str) -> None:
    response = client_for(world, "integrator").get(url)
    assert response.status_code == 403
    assert "Integrator accounts use the REST API" in response.content.decode()


@pytest.mark.parametrize("kind", DETAIL_KINDS)
def test_integrators_cannot_open_detail_pages(world: World, kind: str) -> None:
    response = client_for(world, "integrator").get(_detail_urls(world)[kind]["depot"])
    assert response.status_code == 403


@pytest.mark.parametrize("url", ALL_PAGES)
def test_a_user_without_membership_gets_a_403_page(world: World, url: str) -> None:
    response = client_for(world, "nobody").get(url)
    assert response.status_code == 403
    assert "not a member of any organization" in response.content.decode()


@pytest.mark.parametrize("url", [*ALL_PAGES, "/chargers/1/", "/sessions/1/", "/sites/1/"])
def test_anonymous_visitors_are_sent_to_sign_in(db: Any, url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_site_hosts_cannot_manage_id_tokens(world: World) -> None:
    client = client_for(world, "host")
    assert client.get("/id-tokens/new/").status_code == 403
    assert client.post(f"/id-tokens/{world.id_token.pk}/block").status_code == 403
    world.id_token.refresh_from_db()
    assert world.id_token.status == "Accepted"
    assert "Id tokens" not in client.get("/").content.decode()


def test_operators_cannot_block_another_tenants_id_token(world: World) -> None:
    response = client_for(world, "operator").post(f"/id-tokens/{world.globex_id_token.pk}/block")
    assert response.status_code == 404
    world.globex_id_token.refresh_from_db()
    assert world.globex_id_token.status == "Accepted"


def test_admins_cannot_revoke_another_tenants_api_token(world: World) -> None:
    response = client_for(world, "admin").post(f"/api-tokens/{world.globex_api_token.pk}/revoke")
    assert response.status_code == 404
    world.globex_api_token.refresh_from_db()
    assert world.globex_api_token.revoked_at is None


def test_operators_cannot_open_api_tokens(world: World) -> None:
    client = client_for(world, "operator")
    assert client.get("/api-tokens/").status_code == 403
    assert client.post(f"/api-tokens/{world.api_token.pk}/revoke").status_code == 403
    assert "API tokens" not in client.get("/").content.decode()


def test_filter_choices_never_name_another_tenants_sites(world: World) -> None:
    body = client_for(world, "host").get("/chargers/").content.decode()
    assert "Globex Yard" not in body
    assert "Harbour" not in body
    # A guessed site id of another organization is refused as a choice, not used as a filter.
    response = client_for(world, "operator").get(f"/chargers/?site={world.globex_site.pk}")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert "GLOBEX-1" not in response.content.decode()


def test_csv_exports_hold_only_the_tenants_rows(world: World) -> None:
    client = client_for(world, "host")
    chargers = client.get("/chargers/?export=csv").content.decode()
    sessions = client.get("/sessions/?export=csv").content.decode()
    assert "ACME-DEPOT-1" in chargers
    assert "ACME-HARBOUR-1" not in chargers and "GLOBEX-1" not in chargers
    assert "TAG-101" in sessions
    assert "TAG-202" not in sessions and "TAG-303" not in sessions


# --- Organization switch -------------------------------------------------------------------------


def test_a_member_of_two_organizations_switches_between_them(world: World) -> None:
    user = world.users["operator"]
    Membership.objects.create(user=user, organization=world.globex, role=Role.OPERATOR)
    client = client_for(world, "operator")
    assert "ACME-DEPOT-1" in client.get("/chargers/").content.decode()

    response = client.post(
        "/organization/",
        {"organization": world.globex.pk, "next": f"/chargers/{world.depot_charger.pk}/"},
    )
    # Back to the same section, never to an object of the previous organization.
    assert response.status_code == 302
    assert response["Location"] == "/chargers/"
    body = client.get("/chargers/").content.decode()
    assert "GLOBEX-1" in body
    assert "ACME-DEPOT-1" not in body
    assert client.get(f"/chargers/{world.depot_charger.pk}/").status_code == 404


def test_switching_to_an_organization_one_is_not_a_member_of_is_refused(world: World) -> None:
    client = client_for(world, "operator")
    response = client.post("/organization/", {"organization": world.globex.pk})
    assert response.status_code == 404
    assert "GLOBEX-1" not in client.get("/chargers/").content.decode()
    assert client.post("/organization/", {"organization": "not-a-number"}).status_code == 404


def test_a_removed_membership_falls_back_to_the_remaining_one(world: World) -> None:
    user = world.users["operator"]
    Membership.objects.create(user=user, organization=world.globex, role=Role.OPERATOR)
    client = client_for(world, "operator")
    client.post("/organization/", {"organization": world.globex.pk})
    Membership.objects.filter(user=user, organization=world.globex).delete()
    body = client.get("/chargers/").content.decode()
    assert "ACME-DEPOT-1" in body
    assert "GLOBEX-1" not in body
