"""Tenancy of the REST API: every resource, every role. Another organization's objects are absent
from lists and a 404 by guessed id; a site host sees only the sites they look after."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chargers.firmware_models import FirmwareCampaign
from chargers.models import Site
from cpms.models import Role
from tests.cpms.api_world import Tenancy, World, all_pages, build_world

ROLES = [Role.OPERATOR_ADMIN, Role.OPERATOR, Role.SITE_HOST, Role.INTEGRATOR]
DEPOT_ONLY = {"ACME-1"}
BOTH = {"ACME-1", "ACME-2"}


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


@dataclass(frozen=True)
class Resource:
    name: str
    list_url: str
    # The key of a listed item, and the keys a tenancy has for a set of its charger identities.
    item_key: Callable[[dict[str, Any]], Any]
    keys: Callable[[Tenancy, set[str]], set[Any]]
    detail_url: Callable[[Any], str]
    site_host_allowed: bool = True


RESOURCES = [
    Resource(
        "sites",
        "/api/v1/sites/",
        lambda item: item["id"],
        lambda t, ids: {t.chargers[i].site_id for i in ids},
        lambda key: f"/api/v1/sites/{key}/",
    ),
    Resource(
        "chargers",
        "/api/v1/chargers/",
        lambda item: item["identity"],
        lambda t, ids: set(ids),
        lambda key: f"/api/v1/chargers/{key}/",
    ),
    Resource(
        "connectors",
        "/api/v1/connectors/",
        lambda item: item["id"],
        lambda t, ids: {t.connectors[i].pk for i in ids},
        lambda key: f"/api/v1/connectors/{key}/",
    ),
    Resource(
        "sessions",
        "/api/v1/sessions/",
        lambda item: item["id"],
        lambda t, ids: {t.sessions[i].pk for i in ids},
        lambda key: f"/api/v1/sessions/{key}/",
    ),
    Resource(
        "frames",
        "/api/v1/frames/",
        lambda item: item["id"],
        lambda t, ids: {f.pk for i in ids for f in t.frames[i]},
        lambda key: f"/api/v1/frames/{key}/",
    ),
    Resource(
        "id-tokens",
        "/api/v1/id-tokens/",
        lambda item: item["id"],
        lambda t, ids: {token.pk for token in t.id_tokens},
        lambda key: f"/api/v1/id-tokens/{key}/",
        site_host_allowed=False,
    ),
]


def visible_identities(role: str) -> set[str]:
    return DEPOT_ONLY if role == Role.SITE_HOST else BOTH


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_a_list_holds_only_what_the_caller_may_see(
    world: World, resource: Resource, role: str
) -> None:
    client = world.client(role)
    if role == Role.SITE_HOST and not resource.site_host_allowed:
        response = client.get(resource.list_url)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        return
    listed = {resource.item_key(item) for item in all_pages(client, resource.list_url)}
    assert listed == resource.keys(world.acme, visible_identities(role))
    assert not listed & resource.keys(world.other, {"OTHER-1"})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_another_organizations_object_is_not_found(
    world: World, resource: Resource, role: str
) -> None:
    client = world.client(role)
    for key in resource.keys(world.other, {"OTHER-1"}):
        response = client.get(resource.detail_url(key))
        if role == Role.SITE_HOST and not resource.site_host_allowed:
            assert response.status_code == 403
            continue
        assert response.status_code == 404, (resource.name, key, response.content)
        assert response.json()["error"]["code"] == "not_found"
        assert "OTHER" not in response.content.decode()


@pytest.mark.parametrize(
    "resource", [r for r in RESOURCES if r.site_host_allowed], ids=lambda r: r.name
)
def test_a_site_host_finds_nothing_outside_their_sites(world: World, resource: Resource) -> None:
    client = world.client(Role.SITE_HOST)
    for key in resource.keys(world.acme, {"ACME-2"}):
        assert client.get(resource.detail_url(key)).status_code == 404
    for key in resource.keys(world.acme, {"ACME-1"}):
        assert client.get(resource.detail_url(key)).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_meter_samples_follow_their_session(world: World, role: str) -> None:
    client = world.client(role)
    for identity in ["ACME-1", "ACME-2"]:
        url = f"/api/v1/sessions/{world.acme.sessions[identity].pk}/meter-samples/"
        if identity in visible_identities(role):
            listed = [item["id"] for item in all_pages(client, url)]
            assert listed == [sample.pk for sample in world.acme.samples[identity]]
        else:
            assert client.get(url).status_code == 404
    foreign = client.get(f"/api/v1/sessions/{world.other.sessions['OTHER-1'].pk}/meter-samples/")
    assert foreign.status_code == 404


@pytest.mark.parametrize("role", [Role.OPERATOR_ADMIN, Role.OPERATOR, Role.INTEGRATOR])
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/chargers/?identity=OTHER",
        "/api/v1/connectors/?charger=OTHER-1",
        "/api/v1/sessions/?charger=OTHER-1",
        "/api/v1/frames/?charger=OTHER-1",
        "/api/v1/id-tokens/?token=OTHER-TAG",
    ],
)
def test_filtering_by_another_organizations_names_finds_nothing(
    world: World, role: str, url: str
) -> None:
    assert all_pages(world.client(role), url) == []


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("file_format", ["ndjson", "csv"])
def test_journal_exports_hold_only_the_callers_frames(
    world: World, role: str, file_format: str
) -> None:
    response = world.client(role).get(f"/api/v1/frames/export.{file_format}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    expected = {f.message_id for i in visible_identities(role) for f in world.acme.frames[i]}
    if file_format == "ndjson":
        exported = {json.loads(line)["message_id"] for line in body.splitlines()}
    else:
        exported = {line.split(",")[6] for line in body.splitlines()[1:]}
    assert exported == expected


# --- Writes by role -------------------------------------------------------------------------------

WRITERS = {Role.OPERATOR_ADMIN, Role.OPERATOR}


@pytest.mark.parametrize("role", ROLES)
def test_only_operators_create_and_change_sites(world: World, role: str) -> None:
    client = world.client(role)
    created = client.post("/api/v1/sites/", {"name": f"New {role}"}, format="json")
    changed = client.patch(
        f"/api/v1/sites/{world.acme.sites['Depot'].pk}/", {"city": "Utrecht"}, format="json"
    )
    expected = (201, 200) if role in WRITERS else (403, 403)
    assert (created.status_code, changed.status_code) == expected


@pytest.mark.parametrize("role", ROLES)
def test_only_operator_admins_delete_sites(world: World, role: str) -> None:
    response = world.client(role).delete(f"/api/v1/sites/{world.acme.sites['Harbour'].pk}/")
    assert response.status_code == (204 if role == Role.OPERATOR_ADMIN else 403)


def test_a_site_a_firmware_campaign_targets_is_not_deleted_from_under_it(world: World) -> None:
    site = world.acme.sites["Harbour"]
    FirmwareCampaign.objects.create(
        organization=site.organization,
        name="Spring update",
        location="https://firmware.example/2.0.bin",
        site=site,
    )
    response = world.client(Role.OPERATOR_ADMIN).delete(f"/api/v1/sites/{site.pk}/")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "in_use",
        "message": "It is still in use by firmware campaigns and cannot be deleted.",
        "details": {"in_use_by": ["firmware campaigns"]},
    }
    assert Site.objects.filter(pk=site.pk).exists()


@pytest.mark.parametrize("role", ROLES)
def test_only_operators_register_and_edit_chargers(world: World, role: str) -> None:
    client = world.client(role)
    created = client.post(
        "/api/v1/chargers/", {"identity": f"NEW-{role}", "password": "x" * 20}, format="json"
    )
    changed = client.patch("/api/v1/chargers/ACME-1/", {"heartbeat_interval": 120}, format="json")
    expected = (201, 200) if role in WRITERS else (403, 403)
    assert (created.status_code, changed.status_code) == expected


@pytest.mark.parametrize("role", ROLES)
def test_id_tokens_are_managed_by_operators_and_integrators(world: World, role: str) -> None:
    client = world.client(role)
    created = client.post("/api/v1/id-tokens/", {"token": f"T-{role}"[:20]}, format="json")
    pk = world.acme.id_tokens[0].pk
    changed = client.patch(f"/api/v1/id-tokens/{pk}/", {"status": "Blocked"}, format="json")
    deleted = client.delete(f"/api/v1/id-tokens/{pk}/")
    if role == Role.SITE_HOST:
        assert (created.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
    else:
        assert (created.status_code, changed.status_code, deleted.status_code) == (201, 200, 204)


@pytest.mark.parametrize("role", [Role.OPERATOR_ADMIN, Role.OPERATOR])
def test_writers_cannot_touch_another_organizations_objects(world: World, role: str) -> None:
    client = world.client(role)
    other = world.other
    attempts = [
        client.patch(f"/api/v1/sites/{other.sites['Yard'].pk}/", {"city": "X"}, format="json"),
        client.put(f"/api/v1/sites/{other.sites['Yard'].pk}/", {"name": "X"}, format="json"),
        client.patch("/api/v1/chargers/OTHER-1/", {"heartbeat_interval": 60}, format="json"),
        client.patch(
            f"/api/v1/id-tokens/{other.id_tokens[0].pk}/", {"status": "Blocked"}, format="json"
        ),
        client.delete(f"/api/v1/id-tokens/{other.id_tokens[0].pk}/"),
    ]
    if role == Role.OPERATOR_ADMIN:
        attempts.append(client.delete(f"/api/v1/sites/{other.sites['Yard'].pk}/"))
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    other.sites["Yard"].refresh_from_db()
    other.chargers["OTHER-1"].refresh_from_db()
    other.id_tokens[0].refresh_from_db()
    assert other.sites["Yard"].city == ""
    assert other.chargers["OTHER-1"].heartbeat_interval is None
    assert other.id_tokens[0].status == "Accepted"


def test_a_charger_cannot_be_moved_to_another_organizations_site(world: World) -> None:
    client = world.client(Role.OPERATOR)
    response = client.patch(
        "/api/v1/chargers/ACME-1/", {"site": world.other.sites["Yard"].pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["site"][0]["code"] == "does_not_exist"
    assert "Yard" not in response.content.decode()
    world.acme.chargers["ACME-1"].refresh_from_db()
    assert world.acme.chargers["ACME-1"].site_id == world.acme.sites["Depot"].pk


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", ["/api/v1/connectors/", "/api/v1/sessions/", "/api/v1/frames/"])
def test_read_only_resources_refuse_writes(world: World, role: str, url: str) -> None:
    response = world.client(role).post(url, {}, format="json")
    # Operators are allowed to write in general; these resources have no write method.
    assert response.status_code == (405 if role in WRITERS else 403)
    assert response.json()["error"]["code"] in {"method_not_allowed", "permission_denied"}
