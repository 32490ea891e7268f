"""The tariff REST API: create, edit the draft, publish versions, assign, price examples and the
simulator; bad input and other people's sites are refused with a clear error and change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import services
from billing.models import Tariff, TariffAssignment, TariffVersion
from chargers.models import Session, SessionState
from cpms.models import Role
from tests.cpms.api_world import World, build_world

D = Decimal
TARIFFS = "/api/v1/tariffs/"
ASSIGNMENTS = "/api/v1/tariff-assignments/"

TIME_OF_USE = [
    {
        "price_components": [{"type": "ENERGY", "price": "0.40", "vat": 19}],
        "restrictions": {"start_time": "17:00", "end_time": "21:00"},
    },
    {
        "price_components": [
            {"type": "ENERGY", "price": "0.25", "vat": 19},
            {"type": "PARKING_TIME", "price": "6.00", "vat": 19, "step_size": 60},
        ]
    },
]


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


def create(world: World, role: str = Role.OPERATOR, **body: Any) -> Any:
    payload = {
        "name": "Depot day and night",
        "site": world.acme.sites["Depot"].pk,
        "elements": TIME_OF_USE,
    }
    payload.update(body)
    return world.client(role).post(TARIFFS, payload, format="json")


def error_messages(response: Any, field: str) -> str:
    details = response.json()["error"]["details"]
    return " ".join(item["message"] for item in details[field])


def test_a_site_host_creates_publishes_and_assigns_a_time_of_use_tariff(world: World) -> None:
    host = world.client(Role.SITE_HOST)
    created = create(world, Role.SITE_HOST, parking_grace_seconds=1800, min_price="1.00")
    assert created.status_code == 201, created.content
    tariff = created.json()
    assert tariff["currency"] == "EUR"  # the site's
    assert tariff["current_version"] is None
    assert tariff["draft"]["number"] == 1
    assert tariff["draft"]["parking_grace_seconds"] == 1800
    assert tariff["editable"] is True

    published = host.post(f"{TARIFFS}{tariff['id']}/publish/", {}, format="json")
    assert published.status_code == 200, published.content
    assert published.json()["state"] == "published"
    detail = host.get(f"{TARIFFS}{tariff['id']}/").json()
    assert detail["current_version"]["number"] == 1
    assert detail["draft"] is None

    assigned = host.post(
        ASSIGNMENTS, {"tariff": tariff["id"], "site": world.acme.sites["Depot"].pk}, format="json"
    )
    assert assigned.status_code == 201, assigned.content
    assert assigned.json()["level"] == "site"
    assert assigned.json()["active"] is True

    # The price example: 22 kWh from Tuesday 16 June 2026 18:00 to 20:00 at the site (Amsterdam),
    # all in the peak: 22 x 0.40 = 8.80, VAT 19 % = 1.672 -> 1.67, 10.47 in all.
    example = host.post(
        f"{TARIFFS}{tariff['id']}/price-example/",
        {
            "version": "current",
            "started_at": "2026-06-16T18:00:00+02:00",
            "energy_kwh": "22",
            "charging_minutes": 120,
        },
        format="json",
    )
    assert example.status_code == 200, example.content
    body = example.json()
    assert body["priced"]["total_excl_vat"] == "8.800"
    assert body["priced"]["total_incl_vat"] == "10.470"
    assert (
        "A 22 kWh, 2 h session on Tuesday 16 Jun 2026 at 18:00 costs 10.47 EUR including VAT"
        in body["sentence"]
    )


def test_published_versions_never_change_a_new_draft_becomes_version_two(world: World) -> None:
    client = world.client(Role.OPERATOR)
    tariff_id = create(world).json()["id"]
    client.post(f"{TARIFFS}{tariff_id}/publish/", {}, format="json")
    first = TariffVersion.objects.get(tariff_id=tariff_id, number=1)

    cheaper = [{"price_components": [{"type": "ENERGY", "price": "0.20", "vat": 19}]}]
    draft = client.put(f"{TARIFFS}{tariff_id}/draft/", {"elements": cheaper}, format="json")
    assert draft.status_code == 200, draft.content
    assert draft.json()["number"] == 2
    assert draft.json()["state"] == "draft"
    first.refresh_from_db()
    assert first.elements[0]["price_components"][0]["price"] == "0.4"  # unchanged

    # Effective in the past: refused, nothing published.
    past = client.post(
        f"{TARIFFS}{tariff_id}/publish/", {"effective_from": "2020-01-01T00:00:00Z"}, format="json"
    )
    assert past.status_code == 400
    assert "in the past" in error_messages(past, "effective_from")
    assert TariffVersion.objects.get(tariff_id=tariff_id, number=2).state == "draft"

    # Effective tomorrow: version 1 stays in force until then.
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()
    scheduled = client.post(
        f"{TARIFFS}{tariff_id}/publish/", {"effective_from": tomorrow}, format="json"
    )
    assert scheduled.status_code == 200
    detail = client.get(f"{TARIFFS}{tariff_id}/").json()
    assert detail["current_version"]["number"] == 1
    assert [v["number"] for v in client.get(f"{TARIFFS}{tariff_id}/versions/").json()] == [2, 1]
    # Nothing left to publish.
    again = client.post(f"{TARIFFS}{tariff_id}/publish/", {}, format="json")
    assert again.status_code == 400


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"elements": [{"price_components": [{"type": "ENERGY", "price": "-0.10", "vat": 19}]}]},
            "elements[0].price_components[0].price",
            "cannot be negative",
        ),
        (
            {"elements": [{"price_components": [{"type": "ENERGY", "price": "0.30", "vat": 119}]}]},
            "elements[0].price_components[0].vat",
            "from 0 to 100",
        ),
        ({"currency": "USD"}, "currency", "billed in EUR"),
        ({"min_price": "-1"}, "min_price", "cannot be negative"),
        ({"min_price": "5", "max_price": "2"}, "max_price", "below the minimum"),
        (
            {
                "elements": [
                    {
                        "price_components": [{"type": "ENERGY", "price": "0.40", "vat": 19}],
                        "restrictions": {"start_time": "17:00", "end_time": "21:00"},
                    },
                    {
                        "price_components": [{"type": "ENERGY", "price": "0.30", "vat": 19}],
                        "restrictions": {"start_time": "20:00", "end_time": "23:00"},
                    },
                ]
            },
            "elements[1].restrictions",
            "Overlaps element 0",
        ),
        (
            {
                "elements": [
                    {
                        "price_components": [{"type": "ENERGY", "price": "0.40", "vat": 19}],
                        "restrictions": {"min_kwh": 50, "max_kwh": 10},
                    }
                ]
            },
            "elements[0].restrictions.max_kwh",
            "above min_kwh",
        ),
        ({"elements": "cheap"}, "elements", "at least one tariff element"),
    ],
)
def test_bad_tariffs_get_a_clear_error_and_change_nothing(
    world: World, body: dict[str, Any], field: str, message: str
) -> None:
    response = create(world, **body)
    assert response.status_code == 400, response.content
    assert message in error_messages(response, field)
    assert not Tariff.objects.exists()


def test_a_bad_draft_leaves_the_draft_as_it_was(world: World) -> None:
    client = world.client(Role.OPERATOR)
    tariff_id = create(world).json()["id"]
    bad = [{"price_components": [{"type": "ENERGY", "price": "0.30", "vat": -5}]}]
    response = client.put(f"{TARIFFS}{tariff_id}/draft/", {"elements": bad}, format="json")
    assert response.status_code == 400
    assert (
        TariffVersion.objects.get(tariff_id=tariff_id).elements[0]["price_components"][0]["price"]
        == "0.4"
    )


def test_site_hosts_edit_their_own_sites_only(world: World) -> None:
    host = world.client(Role.SITE_HOST)
    harbour = world.acme.sites["Harbour"]
    refused = create(world, Role.SITE_HOST, name="Harbour", site=harbour.pk)
    assert refused.status_code == 400
    assert "your own sites only" in error_messages(refused, "site")
    no_site = create(world, Role.SITE_HOST, name="Everywhere", site=None)
    assert no_site.status_code == 400
    assert "choose it" in error_messages(no_site, "site")
    assert not Tariff.objects.exists()

    # A tariff of the Harbour, made by an operator, is not there for the Depot's host at all.
    harbour_tariff = create(world, name="Harbour", site=harbour.pk).json()["id"]
    org_wide = create(world, name="Organization", site=None).json()["id"]
    assert host.get(f"{TARIFFS}{harbour_tariff}/").status_code == 404
    assert (
        host.put(
            f"{TARIFFS}{harbour_tariff}/draft/", {"elements": TIME_OF_USE}, format="json"
        ).status_code
        == 404
    )
    assert host.post(f"{TARIFFS}{harbour_tariff}/publish/", {}, format="json").status_code == 404
    assert {t["id"] for t in host.get(TARIFFS).json()["results"]} == set()
    assert host.get(f"{TARIFFS}{org_wide}/").status_code == 404

    # Their own tariff cannot be assigned to the Harbour or its charger.
    own = create(world, Role.SITE_HOST, name="Depot").json()["id"]
    host.post(f"{TARIFFS}{own}/publish/", {}, format="json")
    for body in ({"site": harbour.pk}, {"charger": world.acme.chargers["ACME-2"].pk}):
        response = host.post(ASSIGNMENTS, {"tariff": own, **body}, format="json")
        assert response.status_code == 400, response.content
    assert not TariffAssignment.objects.exists()
    # An operator's organization-wide tariff is not theirs to assign either.
    response = host.post(
        ASSIGNMENTS, {"tariff": org_wide, "site": world.acme.sites["Depot"].pk}, format="json"
    )
    assert response.status_code == 400
    assert "own sites only" in error_messages(response, "tariff")


def test_integrators_read_and_other_organizations_see_nothing(world: World) -> None:
    tariff_id = create(world).json()["id"]
    integrator = world.client(Role.INTEGRATOR)
    assert integrator.get(f"{TARIFFS}{tariff_id}/").status_code == 200
    assert create(world, Role.INTEGRATOR, name="Mine").status_code == 403
    assert integrator.post(f"{TARIFFS}{tariff_id}/publish/", {}, format="json").status_code == 403
    other = world.client(Role.OPERATOR_ADMIN, "other")
    assert other.get(f"{TARIFFS}{tariff_id}/").status_code == 404
    assert other.get(TARIFFS).json()["results"] == []
    # Another organization's site cannot be named.
    response = other.post(
        TARIFFS,
        {"name": "x", "site": world.acme.sites["Depot"].pk, "elements": TIME_OF_USE},
        format="json",
    )
    assert response.status_code == 400


def test_assignments_replace_and_end_and_respect_the_tariffs_site(world: World) -> None:
    client = world.client(Role.OPERATOR)
    depot = create(world).json()["id"]
    client.post(f"{TARIFFS}{depot}/publish/", {}, format="json")
    # A tariff of the Depot cannot go onto the Harbour's charger.
    wrong = client.post(
        ASSIGNMENTS, {"tariff": depot, "charger": world.acme.chargers["ACME-2"].pk}, format="json"
    )
    assert wrong.status_code == 400
    assert "belongs to the site Depot" in error_messages(wrong, "charger")
    two = client.post(
        ASSIGNMENTS,
        {
            "tariff": depot,
            "site": world.acme.sites["Depot"].pk,
            "charger": world.acme.chargers["ACME-1"].pk,
        },
        format="json",
    )
    assert two.status_code == 400

    first = client.post(
        ASSIGNMENTS, {"tariff": depot, "charger": world.acme.chargers["ACME-1"].pk}, format="json"
    )
    assert first.status_code == 201
    second = client.post(
        ASSIGNMENTS, {"tariff": depot, "charger": world.acme.chargers["ACME-1"].pk}, format="json"
    )
    assert second.status_code == 201
    listed = client.get(ASSIGNMENTS, {"tariff": depot}).json()["results"]
    assert [a["active"] for a in listed] == [True, False]
    ended = client.post(f"{ASSIGNMENTS}{second.json()['id']}/end/", {}, format="json")
    assert ended.status_code == 200
    assert ended.json()["active"] is False
    assert TariffAssignment.objects.count() == 2  # ended, never deleted


def test_a_published_tariff_cannot_be_deleted_a_draft_one_can(world: World) -> None:
    client = world.client(Role.OPERATOR)
    draft_only = create(world, name="Draft").json()["id"]
    published = create(world, name="Published").json()["id"]
    client.post(f"{TARIFFS}{published}/publish/", {}, format="json")
    assert client.delete(f"{TARIFFS}{published}/").status_code == 400
    assert client.delete(f"{TARIFFS}{draft_only}/").status_code == 204
    assert list(Tariff.objects.values_list("name", flat=True)) == ["Published"]


def test_simulator_compares_revenue_now_and_with_the_draft_session_by_session(world: World) -> None:
    client = world.client(Role.SITE_HOST)
    depot = world.acme.sites["Depot"]
    flat = [{"price_components": [{"type": "ENERGY", "price": "0.30", "vat": 19}]}]
    tariff_id = create(world, Role.SITE_HOST, elements=flat).json()["id"]
    tariff = Tariff.objects.get(pk=tariff_id)
    version = services.tariff_publish(version=tariff.versions.get())
    TariffVersion.objects.filter(pk=version.pk).update(
        effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )
    TariffAssignment.objects.create(
        organization=tariff.organization,
        tariff=tariff,
        site=depot,
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    # The Depot's session: 10 kWh, completed.
    session = world.acme.sessions["ACME-1"]
    Session.objects.filter(pk=session.pk).update(
        state=SessionState.COMPLETED,
        stopped_at=session.started_at + timedelta(hours=1),
        meter_stop_wh=D(11000),
        energy_wh=D(10000),
    )
    # The draft: 0.35/kWh plus 1.00 per session.
    draft = [
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.35", "vat": 19},
                {"type": "FLAT", "price": "1.00", "vat": 19},
            ]
        }
    ]
    assert (
        client.put(f"{TARIFFS}{tariff_id}/draft/", {"elements": draft}, format="json").status_code
        == 200
    )
    response = client.post(f"{TARIFFS}{tariff_id}/simulate/", {"sessions": 10}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    # Now: 10 kWh x 0.30 = 3.00. Draft: 10 x 0.35 + 1.00 = 4.50.
    assert body["sessions"] == 1
    assert body["revenue_now"] == "3.000"
    assert body["revenue_draft"] == "4.500"
    assert body["difference"] == "1.500"
    assert body["difference_percent"] == "50.0"
    assert body["rows"][0]["session_id"] == session.pk
    assert body["rows"][0]["tariff_now"] == "Depot day and night v1"
    # The Harbour is not the host's to replay.
    harbour = client.post(
        f"{TARIFFS}{tariff_id}/simulate/", {"site": world.acme.sites["Harbour"].pk}, format="json"
    )
    assert harbour.status_code == 400


def test_price_groups(world: World) -> None:
    operator = world.client(Role.OPERATOR)
    created = operator.post(
        "/api/v1/price-groups/",
        {"name": "Residents", "id_tokens": ["ACME-TAG-1"], "group_token": ""},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["id_tokens"] == ["ACME-TAG-1"]
    # Another organization's token is unknown here.
    foreign = operator.post(
        "/api/v1/price-groups/", {"name": "Fleet", "id_tokens": ["OTHER-TAG"]}, format="json"
    )
    assert foreign.status_code == 400
    # PostgreSQL text cannot hold a NUL: a field error, never a failed lookup.
    nul = operator.post(
        "/api/v1/price-groups/", {"name": "Nul", "id_tokens": ["ACME\x00TAG"]}, format="json"
    )
    assert nul.status_code == 400
    assert nul.json()["error"]["details"]["id_tokens"] == [
        {"message": "Null characters are not allowed.", "code": "null_characters"}
    ]
    assert (
        world.client(Role.SITE_HOST)
        .post("/api/v1/price-groups/", {"name": "Mine"}, format="json")
        .status_code
        == 403
    )
    assert world.client(Role.SITE_HOST).get("/api/v1/price-groups/").status_code == 200
