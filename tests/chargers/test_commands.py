"""Management commands: add_charger, add_idtoken and seed_demo."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.management import CommandError, call_command

from chargers import passwords, services
from chargers.management.commands import seed_demo
from chargers.models import Charger, IdToken, Site
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db


def run(*args: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- add_charger ---------------------------------------------------------------------------------


def test_add_charger_prints_a_generated_password_that_authenticates(organization):
    output = run("add_charger", "CP-77")
    charger = Charger.objects.get(identity="CP-77")
    assert charger.organization == organization
    assert charger.registration_status == "Accepted"
    [password] = [
        line.removeprefix("password: ")
        for line in output.splitlines()
        if line.startswith("password: ")
    ]
    assert len(password) >= 16
    # A generated password is a machine secret: kept as a keyed digest, not in PBKDF2.
    assert charger.password_hash.startswith("cpms_keyed_sha256$")
    assert passwords.verify_password("CP-77", password, charger.password_hash)
    assert not passwords.verify_password("CP-77", password[:-1], charger.password_hash)
    connection = services.charger_connect(
        identity="CP-77", password=password, ocpp_version="1.6", channel_name="c"
    )
    assert connection.charger_pk == charger.pk


def test_add_charger_with_password_org_site_and_status(organization):
    other = Organization.objects.create(name="Other", slug="other")
    output = run(
        "add_charger",
        "CP-8",
        "--password",
        "given-secret-1",
        "--org",
        "other",
        "--site",
        "Harbour",
        "--status",
        "Pending",
    )
    assert "given-secret-1" not in output
    charger = Charger.objects.get(identity="CP-8")
    assert (
        charger.organization,
        charger.site.name,
        charger.site.organization,
        charger.registration_status,
    ) == (other, "Harbour", other, "Pending")
    assert check_password("given-secret-1", charger.password_hash)
    # The site is reused, not duplicated.
    run(
        "add_charger", "CP-9", "--password", "given-secret-2", "--org", "other", "--site", "Harbour"
    )
    assert Site.objects.filter(organization=other, name="Harbour").count() == 1


def test_add_charger_refuses_a_duplicate(charger):
    with pytest.raises(CommandError, match="already exists"):
        run("add_charger", charger.identity)
    assert Charger.objects.filter(identity=charger.identity).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a/b"], "charger id"),
        (["x" * 49], "charger id"),
        ([""], "charger id"),
        (["CP-1", "--password", "short"], "password"),
        (["CP-1", "--org", "nowhere"], "no organization"),
    ],
)
def test_add_charger_refuses_bad_input(organization, args, message):
    with pytest.raises(CommandError, match=message):
        run("add_charger", *args)
    assert not Charger.objects.exists()


def test_add_charger_needs_an_organization(db):
    with pytest.raises(CommandError, match="no organization"):
        run("add_charger", "CP-1")


# --- add_idtoken ---------------------------------------------------------------------------------


def test_add_idtoken_with_status_expiry_group_and_owner(organization):
    output = run(
        "add_idtoken",
        "CARD-9",
        "--status",
        "Blocked",
        "--expires",
        "2030-06-01T12:00:00+02:00",
        "--group",
        "FLEET-1",
        "--owner",
        "Kim",
    )
    assert "CARD-9" in output
    token = IdToken.objects.get(token="CARD-9")
    assert (
        token.organization,
        token.status,
        token.expires_at,
        token.group_token,
        token.owner_name,
    ) == (organization, "Blocked", datetime(2030, 6, 1, 10, tzinfo=UTC), "FLEET-1", "Kim")


def test_add_idtoken_defaults_to_accepted_without_expiry(organization):
    run("add_idtoken", "CARD-1")
    token = IdToken.objects.get(token="CARD-1")
    assert (token.status, token.expires_at) == ("Accepted", None)
    assert (
        services.id_token_authorize(organization_pk=organization.pk, token="CARD-1").status
        == "Accepted"
    )
    assert token.local_list is False


def test_add_idtoken_puts_a_token_in_the_local_lists(organization):
    run("add_idtoken", "CARD-2", "--local-list")
    assert IdToken.objects.get(token="CARD-2").local_list is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CARD-1", "--expires", "2030-06-01T12:00:00"], "time zone"),
        (["CARD-1", "--expires", "next tuesday"], "time zone"),
        (["CARD-1", "--expires", "2030-13-45T12:00:00Z"], "expires"),
        (["X" * 21], "1 to 20"),
        ([""], "1 to 20"),
        (["CARD-1", "--org", "nowhere"], "no organization"),
    ],
)
def test_add_idtoken_refuses_bad_input(organization, args, message):
    with pytest.raises(CommandError, match=message):
        run("add_idtoken", *args)
    assert not IdToken.objects.exists()


def test_add_idtoken_refuses_an_unknown_status(organization):
    with pytest.raises(CommandError):
        run("add_idtoken", "CARD-1", "--status", "Maybe")
    assert not IdToken.objects.exists()


def test_add_idtoken_refuses_a_duplicate(id_token):
    with pytest.raises(CommandError, match="already exists"):
        run("add_idtoken", id_token.token)


# --- seed_demo -----------------------------------------------------------------------------------


def counts() -> dict[str, int]:
    return {
        "organizations": Organization.objects.count(),
        "sites": Site.objects.count(),
        "chargers": Charger.objects.count(),
        "id_tokens": IdToken.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
    }


def test_seed_demo_is_idempotent_and_makes_the_admin_an_operator_admin(db):
    output = run("seed_demo")
    first = counts()
    assert first == {
        "organizations": 1,
        "sites": 1,
        "chargers": 5,
        "id_tokens": len(seed_demo.DEMO_TOKENS),
        "users": 1,
        "memberships": 1,
    }
    run("seed_demo")
    assert counts() == first
    admin = get_user_model().objects.get(username=seed_demo.DEMO_ADMIN)
    assert admin.is_superuser
    assert admin.check_password(seed_demo.DEMO_ADMIN_PASSWORD)
    membership = Membership.objects.get(user=admin)
    assert (membership.organization.slug, membership.role) == (
        seed_demo.DEMO_ORG,
        Role.OPERATOR_ADMIN,
    )
    assert seed_demo.DEMO_ADMIN_PASSWORD in output
    # The demo chargers authenticate with the printed password.
    services.charger_connect(
        identity="DEMO-001",
        password=seed_demo.DEMO_CHARGER_PASSWORD,
        ocpp_version="1.6",
        channel_name="c",
    )
    assert IdToken.objects.get(token="DEMO-BLOCKED").status == "Blocked"


def test_seed_demo_adds_chargers_when_asked_for_more(db):
    run("seed_demo", "--chargers", "2")
    run("seed_demo", "--chargers", "4")
    assert sorted(Charger.objects.values_list("identity", flat=True)) == [
        "DEMO-001",
        "DEMO-002",
        "DEMO-003",
        "DEMO-004",
    ]
