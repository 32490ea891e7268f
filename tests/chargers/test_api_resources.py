"""The REST API resources of the central system: what they accept, refuse and return."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.http import StreamingHttpResponse

from chargers import passwords
from chargers.models import Charger, Frame, IdToken, RegistrationStatus, Site
from cpms.models import Role
from tests.cpms.api_world import T0, World, all_pages, build_world


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


@pytest.fixture
def operator(world: World) -> Any:
    return world.client(Role.OPERATOR)


def details(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    return response.json()["error"]["details"]


# --- Id tokens ------------------------------------------------------------------------------------


def test_an_id_token_is_created_with_its_details(world: World, operator: Any) -> None:
    response = operator.post(
        "/api/v1/id-tokens/",
        {
            "token": "04A2B3C4D5E6F7",
            "type": "ISO14443",
            "owner_name": "Ada",
            "owner_email": "ada@example.com",
            "expires_at": "2030-01-01T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "Accepted"
    assert body["expires_at"] == "2030-01-01T00:00:00Z"
    stored = IdToken.objects.get(pk=body["id"])
    assert stored.organization == world.acme.organization
    assert (stored.token, stored.owner_email) == ("04A2B3C4D5E6F7", "ada@example.com")


def test_an_id_token_of_more_than_36_characters_is_refused_clearly(operator: Any) -> None:
    response = operator.post("/api/v1/id-tokens/", {"token": "A" * 37}, format="json")
    [problem] = details(response)["token"]
    assert problem["code"] == "max_length"
    assert "at most 36 characters" in problem["message"]
    assert "1.6" in problem["message"]
    assert not IdToken.objects.filter(token="A" * 37).exists()


def test_an_id_token_of_36_characters_is_accepted(operator: Any) -> None:
    assert (
        operator.post("/api/v1/id-tokens/", {"token": "B" * 36}, format="json").status_code == 201
    )


@pytest.mark.parametrize("token", ["", "has space", "tab\there", "\u00e9t\u00e9"])
def test_an_id_token_must_be_printable_ascii(operator: Any, token: str) -> None:
    assert "token" in details(operator.post("/api/v1/id-tokens/", {"token": token}, format="json"))


def test_a_duplicate_id_token_is_a_400_not_a_500(world: World, operator: Any) -> None:
    response = operator.post("/api/v1/id-tokens/", {"token": "ACME-TAG-1"}, format="json")
    assert (
        details(response)["token"][0]["message"] == "Your organization has this id token already."
    )
    assert (
        IdToken.objects.filter(token="ACME-TAG-1", organization=world.acme.organization).count()
        == 1
    )


def test_the_same_id_token_may_exist_in_two_organizations(operator: Any) -> None:
    assert (
        operator.post("/api/v1/id-tokens/", {"token": "OTHER-TAG"}, format="json").status_code
        == 201
    )


def test_renaming_an_id_token_onto_another_is_a_400(world: World, operator: Any) -> None:
    first, second = world.acme.id_tokens
    response = operator.patch(
        f"/api/v1/id-tokens/{second.pk}/", {"token": first.token}, format="json"
    )
    assert "token" in details(response)
    second.refresh_from_db()
    assert second.token == "ACME-TAG-2"


def test_an_id_token_is_blocked_and_deleted(world: World, operator: Any) -> None:
    token = world.acme.id_tokens[0]
    response = operator.patch(
        f"/api/v1/id-tokens/{token.pk}/", {"status": "Blocked"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "Blocked"
    token.refresh_from_db()
    assert token.status == "Blocked"
    assert operator.delete(f"/api/v1/id-tokens/{token.pk}/").status_code == 204
    assert not IdToken.objects.filter(pk=token.pk).exists()
    # The session started with it keeps its id tag.
    session = world.acme.sessions["ACME-1"]
    session.refresh_from_db()
    assert (session.id_token, session.id_tag) == (None, "ACME-TAG-1")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "Fingerprint"}, "type"),
        ({"status": "Lost"}, "status"),
        ({"owner_email": "nope"}, "owner_email"),
    ],
)
def test_id_token_fields_are_validated(operator: Any, body: dict[str, Any], field: str) -> None:
    response = operator.post("/api/v1/id-tokens/", {"token": "NEW-1", **body}, format="json")
    assert field in details(response)
    assert not IdToken.objects.filter(token="NEW-1").exists()


# --- Chargers -------------------------------------------------------------------------------------


def test_a_charger_is_registered_with_a_hashed_password(world: World, operator: Any) -> None:
    depot = world.acme.sites["Depot"].pk
    response = operator.post(
        "/api/v1/chargers/",
        {
            "identity": "CP-NEW.01",
            "password": "a-secret-of-twenty-1",
            "site": depot,
            "heartbeat_interval": 60,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert "password" not in body and "password_hash" not in body
    assert (body["identity"], body["site"], body["heartbeat_interval"]) == ("CP-NEW.01", depot, 60)
    charger = Charger.objects.get(identity="CP-NEW.01")
    assert charger.organization == world.acme.organization
    assert "a-secret-of-twenty-1" not in charger.password_hash
    assert passwords.verify_password("CP-NEW.01", "a-secret-of-twenty-1", charger.password_hash)
    assert operator.get("/api/v1/chargers/CP-NEW.01/").json()["identity"] == "CP-NEW.01"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identity": "ACME-1"}, "identity"),
        ({"identity": "OTHER-1"}, "identity"),
        ({"identity": "has/slash"}, "identity"),
        ({"identity": "has:colon"}, "identity"),
        ({"identity": "X" * 49}, "identity"),
        ({"identity": "CP-9", "password": "short"}, "password"),
        ({"identity": "CP-9", "heartbeat_interval": 5}, "heartbeat_interval"),
        ({"identity": "CP-9", "registration_status": "Maybe"}, "registration_status"),
    ],
)
def test_a_bad_charger_is_refused_and_nothing_is_written(
    operator: Any, body: dict[str, Any], field: str
) -> None:
    before = Charger.objects.count()
    assert field in details(operator.post("/api/v1/chargers/", body, format="json"))
    assert Charger.objects.count() == before


def test_an_operator_edits_only_the_editable_fields(world: World, operator: Any) -> None:
    harbour = world.acme.sites["Harbour"].pk
    response = operator.patch(
        "/api/v1/chargers/ACME-1/",
        {
            "site": harbour,
            "registration_status": "Rejected",
            "heartbeat_interval": 900,
            "vendor": "Forged",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["site"], body["registration_status"], body["heartbeat_interval"]) == (
        harbour,
        "Rejected",
        900,
    )
    charger = Charger.objects.get(identity="ACME-1")
    assert (charger.site_id, charger.registration_status, charger.heartbeat_interval) == (
        harbour,
        RegistrationStatus.REJECTED,
        900,
    )
    assert charger.vendor == ""


def test_a_charger_is_taken_off_its_site_with_null(operator: Any) -> None:
    response = operator.patch("/api/v1/chargers/ACME-1/", {"site": None}, format="json")
    assert response.status_code == 200 and response.json()["site"] is None


def test_a_charger_lists_its_connectors(world: World, operator: Any) -> None:
    body = operator.get("/api/v1/chargers/ACME-1/").json()
    assert [(c["connector_id"], c["status"]) for c in body["connectors"]] == [(1, "Available")]


def test_chargers_filter_by_site(world: World, operator: Any) -> None:
    site = world.acme.sites["Harbour"].pk
    assert [c["identity"] for c in all_pages(operator, f"/api/v1/chargers/?site={site}")] == [
        "ACME-2"
    ]


# --- Sites ----------------------------------------------------------------------------------------


def test_a_site_is_created_in_the_callers_organization(world: World, operator: Any) -> None:
    response = operator.post(
        "/api/v1/sites/",
        {
            "name": "Airport",
            "country": "NL",
            "time_zone": "Europe/Amsterdam",
            "latitude": "52.31",
            "longitude": "4.76",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    site = Site.objects.get(pk=response.json()["id"])
    assert site.organization == world.acme.organization
    assert str(site.latitude) == "52.310000"


def test_a_duplicate_site_name_is_a_400(world: World, operator: Any) -> None:
    assert "name" in details(operator.post("/api/v1/sites/", {"name": "Depot"}, format="json"))
    # Another organization's site names are no obstacle.
    assert operator.post("/api/v1/sites/", {"name": "Yard"}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"latitude": "91"}, "latitude"),
        ({"longitude": "-181"}, "longitude"),
        ({"time_zone": "CEST"}, "time_zone"),
    ],
)
def test_site_fields_are_validated(operator: Any, body: dict[str, Any], field: str) -> None:
    assert field in details(operator.post("/api/v1/sites/", {"name": "S", **body}, format="json"))


def test_deleting_a_site_keeps_its_chargers(world: World) -> None:
    admin = world.client(Role.OPERATOR_ADMIN)
    assert admin.delete(f"/api/v1/sites/{world.acme.sites['Harbour'].pk}/").status_code == 204
    charger = Charger.objects.get(identity="ACME-2")
    assert charger.site_id is None


# --- Sessions and meter samples -------------------------------------------------------------------


def test_a_session_reads_in_normalized_units(world: World, operator: Any) -> None:
    session = world.acme.sessions["ACME-1"]
    body = operator.get(f"/api/v1/sessions/{session.pk}/").json()
    assert body["charger"] == "ACME-1"
    assert body["meter_start_wh"] == "1000.000"
    assert body["state"] == "Active"
    assert body["started_at"] == "2026-03-01T08:00:00Z"


def test_sessions_filter_by_charger_state_and_time(world: World, operator: Any) -> None:
    assert [s["charger"] for s in all_pages(operator, "/api/v1/sessions/?charger=ACME-2")] == [
        "ACME-2"
    ]
    assert all_pages(operator, "/api/v1/sessions/?state=Completed") == []
    later = quote((T0 + timedelta(hours=1)).isoformat())
    assert all_pages(operator, f"/api/v1/sessions/?started_after={later}") == []
    assert len(all_pages(operator, f"/api/v1/sessions/?started_before={later}")) == 2


def test_meter_samples_come_oldest_first_and_filter_by_measurand(
    world: World, operator: Any
) -> None:
    session = world.acme.sessions["ACME-1"]
    url = f"/api/v1/sessions/{session.pk}/meter-samples/"
    samples = all_pages(operator, url)
    assert [(s["measurand"], s["value"]) for s in samples] == [
        ("Energy.Active.Import.Register", "1500.000000"),
        ("Power.Active.Import", "7200.000000"),
        ("Energy.Active.Import.Register", "2100.000000"),
    ]
    energy = all_pages(operator, url + "?measurand=Energy.Active.Import.Register")
    assert [s["value"] for s in energy] == ["1500.000000", "2100.000000"]


# --- The frame journal ----------------------------------------------------------------------------


def test_frames_filter_by_charger_action_and_time(world: World, operator: Any) -> None:
    assert {f["charger"] for f in all_pages(operator, "/api/v1/frames/?charger=ACME-2")} == {
        "ACME-2"
    }
    heartbeats = all_pages(operator, "/api/v1/frames/?action=Heartbeat")
    assert sorted(f["charger"] for f in heartbeats) == ["ACME-1", "ACME-2"]
    since = quote((T0 + timedelta(minutes=1)).isoformat())
    until = quote((T0 + timedelta(minutes=2)).isoformat())
    window = all_pages(operator, f"/api/v1/frames/?since={since}&until={until}")
    assert sorted(f["action"] for f in window) == ["StatusNotification", "StatusNotification"]
    assert all_pages(operator, "/api/v1/frames/?direction=out") == []


def _many_frames(world: World, count: int) -> None:
    charger = world.acme.chargers["ACME-1"]
    Frame.objects.bulk_create(
        Frame(
            charger=charger,
            charger_identity="ACME-1",
            direction=Frame.Direction.OUT,
            kind=Frame.Kind.RESULT,
            message_id=f"bulk-{n:05d}",
            action="MeterValues",
            raw=json.dumps([3, f"bulk-{n:05d}", {}]),
            timestamp=T0 + timedelta(hours=1, seconds=n),
        )
        for n in range(count)
    )


def test_the_ndjson_export_streams_every_selected_frame_in_order(
    world: World, operator: Any
) -> None:
    _many_frames(world, 1234)
    response = operator.get("/api/v1/frames/export.ndjson?charger=ACME-1&action=MeterValues")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/x-ndjson"
    assert not response.has_header("Content-Length")
    chunks = list(response.streaming_content)
    assert len(chunks) > 1  # sent in parts as it is read, not built whole
    rows = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    assert [row["message_id"] for row in rows] == [f"bulk-{n:05d}" for n in range(1234)]
    assert rows[0] == {
        "id": rows[0]["id"],
        "timestamp": "2026-03-01T09:00:00Z",
        "charger": "ACME-1",
        "leg": "charger",
        "direction": "out",
        "kind": 3,
        "message_id": "bulk-00000",
        "original_message_id": "",
        "action": "MeterValues",
        "raw": '[3, "bulk-00000", {}]',
    }


def test_the_csv_export_streams_a_header_and_one_row_per_frame(world: World, operator: Any) -> None:
    _many_frames(world, 700)
    response = operator.get("/api/v1/frames/export.csv?action=MeterValues", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="frames.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 700
    assert rows[0]["raw"] == '[3, "bulk-00000", {}]'
    assert rows[-1]["message_id"] == "bulk-00699"


def test_the_csv_export_keeps_formulas_from_running(world: World, operator: Any) -> None:
    Frame.objects.create(
        charger=world.acme.chargers["ACME-1"],
        charger_identity="ACME-1",
        direction=Frame.Direction.IN,
        kind=Frame.Kind.CALL,
        message_id="=HYPERLINK(1)",
        action="DataTransfer",
        raw="x",
        timestamp=T0,
    )
    body = b"".join(operator.get("/api/v1/frames/export.csv?action=DataTransfer").streaming_content)
    [row] = list(csv.DictReader(io.StringIO(body.decode())))
    assert row["message_id"] == "'=HYPERLINK(1)"


def test_an_export_with_a_bad_filter_is_a_json_400(operator: Any) -> None:
    response = operator.get(
        "/api/v1/frames/export.ndjson?until=soon", HTTP_ACCEPT="application/x-ndjson"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("url", ["/api/v1/frames/?", "/api/v1/frames/export.ndjson?"])
def test_time_filters_compare_moments_whatever_their_offset(
    world: World, operator: Any, url: str
) -> None:
    # 09:01 at +01:00 and 05:01 of the next day at +21:00 are both 08:01 UTC (PostgreSQL itself
    # refuses offsets past 15:59: they are converted before the query).
    for since in ["2026-03-01T09:01:00+01:00", "2026-03-02T05:01:00+21:00"]:
        response = operator.get(url + "charger=ACME-1&since=" + quote(since))
        assert response.status_code == 200
        if response.streaming:
            rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
        else:
            rows = response.json()["results"]
        assert sorted(row["action"] for row in rows) == ["Heartbeat", "StatusNotification"]


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_a_moment_outside_the_calendar_in_utc_is_a_400(operator: Any, since: str) -> None:
    response = operator.get("/api/v1/frames/export.csv?since=" + quote(since))
    assert details(response)["since"][0]["message"] == "This moment is out of range."
