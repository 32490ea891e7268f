"""API tokens: stored hashed, scoped to one organization, refused once revoked or expired, issued
by operator admins through the API and by ``create_api_token``; the error format of auth failures."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from chargers.models import Site
from cpms.models import ApiToken, Membership, Organization, Role
from cpms.services import api_token_create, api_token_revoke
from tests.cpms.api_world import World, all_pages, build_world, token_client


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


# --- Storage --------------------------------------------------------------------------------------


def test_only_a_digest_of_the_key_is_stored(db: Any) -> None:
    organization = Organization.objects.create(name="Acme", slug="acme")
    token, key = api_token_create(organization=organization, name="billing sync")
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert key not in {str(value) for value in row.values()}
    assert row["key_digest"] == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(row["prefix"]) and len(row["prefix"]) < len(key) // 3
    assert row["role"] == Role.INTEGRATOR


def test_each_token_has_its_own_key(db: Any) -> None:
    organization = Organization.objects.create(name="Acme", slug="acme")
    keys = {api_token_create(organization=organization, name=f"t{i}")[1] for i in range(5)}
    assert len(keys) == 5


# --- Authentication -------------------------------------------------------------------------------


def test_a_token_acts_for_its_organization(world: World) -> None:
    response = world.client(Role.INTEGRATOR).get("/api/v1/organizations/")
    assert [item["slug"] for item in response.json()["results"]] == ["acme"]
    response = world.client(Role.INTEGRATOR, "other").get("/api/v1/organizations/")
    assert [item["slug"] for item in response.json()["results"]] == ["other"]


def test_no_credentials_is_a_401_with_a_challenge(world: World) -> None:
    response = APIClient().get("/api/v1/chargers/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error(response)["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Token", "Malformed Authorization header"),
        ("Token two parts", "Malformed Authorization header"),
        ("Token cpms_not-a-key-we-issued", "Invalid API key."),
        ("token cpms_not-a-key-we-issued", "Invalid API key."),
    ],
)
def test_a_bad_token_header_is_a_401(world: World, header: str, message: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/chargers/")
    assert response.status_code == 401
    body = error(response)
    assert body["code"] == "authentication_failed"
    assert body["message"].startswith(message)


def test_a_revoked_token_is_refused(world: World) -> None:
    client = world.client(Role.INTEGRATOR)
    assert client.get("/api/v1/chargers/").status_code == 200
    api_token_revoke(token=world.acme.tokens[Role.INTEGRATOR])
    response = client.get("/api/v1/chargers/")
    assert response.status_code == 401
    assert error(response)["message"] == "This API token has been revoked."


def test_an_expired_token_is_refused(world: World) -> None:
    token, key = api_token_create(
        organization=world.acme.organization,
        name="short",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert token_client(key).get("/api/v1/chargers/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = token_client(key).get("/api/v1/chargers/")
    assert response.status_code == 401
    assert error(response)["message"] == "This API token has expired."


def test_last_use_is_recorded_at_most_once_a_minute(world: World) -> None:
    token = world.acme.tokens[Role.INTEGRATOR]
    client = world.client(Role.INTEGRATOR)
    assert token.last_used_at is None
    client.get("/api/v1/chargers/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/chargers/")
    token.refresh_from_db()
    assert token.last_used_at == first
    earlier = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    client.get("/api/v1/chargers/")
    token.refresh_from_db()
    assert token.last_used_at > earlier


def test_a_signed_in_member_uses_the_api_with_their_session(world: World) -> None:
    user = User.objects.create_user("olga", password="a-long-password-1")
    Membership.objects.create(user=user, organization=world.acme.organization, role=Role.OPERATOR)
    client = APIClient()
    client.force_login(user)
    identities = {item["identity"] for item in all_pages(client, "/api/v1/chargers/")}
    assert identities == {"ACME-1", "ACME-2"}


def test_a_signed_in_user_with_no_membership_is_refused(world: World) -> None:
    user = User.objects.create_user("nobody", password="a-long-password-1")
    client = APIClient()
    client.force_login(user)
    response = client.get("/api/v1/chargers/")
    assert response.status_code == 403
    assert error(response)["message"] == "You are not a member of any organization."


# --- Tokens through the API -----------------------------------------------------------------------


def test_an_operator_admin_issues_lists_and_revokes_tokens(world: World) -> None:
    admin = world.client(Role.OPERATOR_ADMIN)
    response = admin.post(
        "/api/v1/api-tokens/", {"name": "warehouse BI", "role": "operator"}, format="json"
    )
    assert response.status_code == 201
    created = response.json()
    key = created["key"]
    assert key.startswith(created["prefix"])
    assert created["role"] == "operator" and created["active"] is True

    listed = all_pages(admin, "/api/v1/api-tokens/")
    assert {item["name"] for item in listed} >= {"warehouse BI", "integrator client"}
    assert all("key" not in item for item in listed)
    assert {item["id"] for item in listed}.isdisjoint(t.pk for t in world.other.tokens.values())
    assert "key" not in admin.get(f"/api/v1/api-tokens/{created['id']}/").json()

    assert token_client(key).get("/api/v1/chargers/").status_code == 200
    assert admin.delete(f"/api/v1/api-tokens/{created['id']}/").status_code == 204
    assert token_client(key).get("/api/v1/chargers/").status_code == 401
    revoked = admin.get(f"/api/v1/api-tokens/{created['id']}/").json()
    assert revoked["active"] is False and revoked["revoked_at"] is not None


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SITE_HOST, Role.INTEGRATOR])
def test_only_operator_admins_manage_tokens(world: World, role: str) -> None:
    client = world.client(role)
    assert client.get("/api/v1/api-tokens/").status_code == 403
    assert client.post("/api/v1/api-tokens/", {"name": "x"}, format="json").status_code == 403
    pk = world.acme.tokens[Role.INTEGRATOR].pk
    assert client.delete(f"/api/v1/api-tokens/{pk}/").status_code == 403
    assert ApiToken.objects.get(pk=pk).revoked_at is None


def test_another_organizations_token_cannot_be_seen_or_revoked(world: World) -> None:
    admin = world.client(Role.OPERATOR_ADMIN)
    foreign = world.other.tokens[Role.INTEGRATOR]
    assert admin.get(f"/api/v1/api-tokens/{foreign.pk}/").status_code == 404
    assert admin.delete(f"/api/v1/api-tokens/{foreign.pk}/").status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_a_site_host_token_is_limited_to_its_sites(world: World) -> None:
    admin = world.client(Role.OPERATOR_ADMIN)
    harbour = world.acme.sites["Harbour"].pk
    response = admin.post(
        "/api/v1/api-tokens/",
        {"name": "harbour host", "role": "site_host", "sites": [harbour]},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["sites"] == [harbour]
    identities = {
        c["identity"] for c in all_pages(token_client(response.json()["key"]), "/api/v1/chargers/")
    }
    assert identities == {"ACME-2"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "host", "role": "site_host"}, "sites"),
        ({"name": "int", "role": "integrator", "sites": ["DEPOT"]}, "sites"),
        ({"name": "", "role": "integrator"}, "name"),
        ({"name": "x", "role": "superuser"}, "role"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_a_bad_token_request_is_a_400_and_issues_nothing(
    world: World, body: dict[str, Any], field: str
) -> None:
    if body.get("sites") == ["DEPOT"]:
        body = {**body, "sites": [world.acme.sites["Depot"].pk]}
    before = ApiToken.objects.count()
    response = world.client(Role.OPERATOR_ADMIN).post("/api/v1/api-tokens/", body, format="json")
    assert response.status_code == 400
    details = error(response)["details"]
    assert field in details
    assert ApiToken.objects.count() == before


def test_a_site_of_another_organization_cannot_scope_a_token(world: World) -> None:
    yard = world.other.sites["Yard"].pk
    response = world.client(Role.OPERATOR_ADMIN).post(
        "/api/v1/api-tokens/", {"name": "h", "role": "site_host", "sites": [yard]}, format="json"
    )
    assert response.status_code == 400
    assert error(response)["details"]["sites"][0]["code"] == "does_not_exist"


# --- The management command -----------------------------------------------------------------------


def test_create_api_token_prints_a_working_key_last(world: World) -> None:
    out = io.StringIO()
    call_command("create_api_token", "--org", "acme", "--name", "ERP export", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(name="ERP export")
    assert token.key_digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.role == Role.INTEGRATOR and token.organization.slug == "acme"
    assert token_client(key).get("/api/v1/organizations/acme/").status_code == 200
    assert token_client(key).get("/api/v1/organizations/other/").status_code == 404


def test_create_api_token_scopes_a_site_host_token(world: World) -> None:
    out = io.StringIO()
    call_command(
        "create_api_token",
        "--org",
        "acme",
        "--name",
        "host",
        "--role",
        "site_host",
        "--site",
        "Harbour",
        stdout=out,
    )
    key = out.getvalue().strip().splitlines()[-1]
    assert {c["identity"] for c in all_pages(token_client(key), "/api/v1/chargers/")} == {"ACME-2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--name", "x"], "no organization"),
        (["--org", "acme", "--name", "x", "--role", "site_host"], "needs at least one --site"),
        (["--org", "acme", "--name", "x", "--site", "Depot"], "site-host tokens only"),
        (
            ["--org", "acme", "--name", "x", "--role", "site_host", "--site", "Yard"],
            "no site 'Yard'",
        ),
    ],
)
def test_create_api_token_refuses_bad_arguments(
    world: World, args: list[str], message: str
) -> None:
    before = ApiToken.objects.count()
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *args, stdout=io.StringIO())
    assert ApiToken.objects.count() == before


def test_the_service_scopes_sites_by_primary_key(world: World) -> None:
    depot: Site = world.acme.sites["Depot"]
    token, key = api_token_create(
        organization=world.acme.organization,
        name="from the dashboard",
        role=Role.SITE_HOST,
        sites=[depot.pk],
    )
    assert list(token.sites.all()) == [depot]
    assert {c["identity"] for c in all_pages(token_client(key), "/api/v1/chargers/")} == {"ACME-1"}
