"""The firmware campaign and diagnostics REST API: create, preview, start, pause, resume,
cancel, targets, bad input, who may, and what another organization never sees; and the upload
URL's answers to bad uploads.

Campaigns and uploads with chargers over real sockets: tests/e2e/test_firmware_campaigns.py and
tests/e2e/test_diagnostics_uploads.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from chargers import uploads
from chargers.models import Charger, Command, DiagnosticsFile, FirmwareCampaign
from cpms.models import Role
from tests.cpms.api_world import World, build_world

pytestmark = pytest.mark.django_db

CAMPAIGN = {
    "name": "2.0.0 for the depot",
    "location": "https://fw.example.com/2.0.0.bin",
    "firmware_version": "2.0.0",
    "canary_count": 1,
    "wave_size": 5,
    "max_failure_ratio": "0.25",
}


@pytest.fixture
def world() -> World:
    world = build_world()
    Charger.objects.filter(identity__in=["ACME-1", "OTHER-1"]).update(
        connected=True, ocpp_version="1.6", vendor="ACME", firmware_version="1.0.0"
    )
    Charger.objects.filter(identity="ACME-2").update(
        connected=False, ocpp_version="2.0.1", vendor="Other", firmware_version="1.0.0"
    )
    return world


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


def create(world: World, role: str = Role.OPERATOR, **fields: Any) -> Any:
    return world.client(role).post(
        "/api/v1/firmware-campaigns/", {**CAMPAIGN, **fields}, format="json"
    )


def test_an_operator_creates_a_draft_previews_and_starts_it(world):
    client = world.client(Role.OPERATOR)
    preview = client.post("/api/v1/firmware-campaigns/preview/", {"vendor": "acme"}, format="json")
    assert preview.json() == {"count": 1, "chargers": ["ACME-1"]}
    response = create(world, vendor="ACME")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["state"], body["vendor"], body["counts"]["total"]) == ("draft", "ACME", 0)
    started = client.post(f"/api/v1/firmware-campaigns/{body['id']}/start/")
    assert started.status_code == 200, started.content
    assert started.json()["state"] == "running"
    assert started.json()["counts"]["sent"] == 1
    targets = client.get(f"/api/v1/firmware-campaigns/{body['id']}/targets/").json()
    assert [(t["charger"], t["wave"], t["state"]) for t in targets] == [("ACME-1", 0, "sent")]
    command = Command.objects.get(pk=targets[0]["command"])
    assert command.payload["location"] == CAMPAIGN["location"]
    again = client.post(f"/api/v1/firmware-campaigns/{body['id']}/start/")
    assert again.status_code == 409
    assert error(again)["message"] == "The campaign is running; only a draft can start."


def test_pause_resume_cancel_and_delete_follow_the_state_machine(world):
    client = world.client(Role.OPERATOR_ADMIN)
    pk = create(world, Role.OPERATOR_ADMIN, chargers=["ACME-1", "ACME-2"]).json()["id"]
    assert client.post(f"/api/v1/firmware-campaigns/{pk}/pause/").status_code == 409
    assert client.post(f"/api/v1/firmware-campaigns/{pk}/start/").status_code == 200
    assert client.post(f"/api/v1/firmware-campaigns/{pk}/pause/").json()["state"] == "paused"
    assert client.post(f"/api/v1/firmware-campaigns/{pk}/resume/").json()["state"] == "running"
    cancelled = client.post(f"/api/v1/firmware-campaigns/{pk}/cancel/").json()
    assert (cancelled["state"], cancelled["counts"]["skipped"]) == ("cancelled", 1)
    refused = client.delete(f"/api/v1/firmware-campaigns/{pk}/")
    assert refused.status_code == 409
    draft = create(world, Role.OPERATOR_ADMIN).json()["id"]
    assert client.delete(f"/api/v1/firmware-campaigns/{draft}/").status_code == 204
    assert not FirmwareCampaign.objects.filter(pk=draft).exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"location": "file:///etc/passwd"}, "location", "Enter a valid URL."),
        ({"location": "https://x/" + "a" * 600}, "location", "no more than 512"),
        ({"max_failure_ratio": "1.5"}, "max_failure_ratio", "less than or equal to 1"),
        ({"canary_count": 0}, "canary_count", "greater than or equal to 1"),
        ({"chargers": ["OTHER-1"]}, "chargers", "No such charger: OTHER-1."),
        ({"signature": "c2ln"}, "signature", "together"),
        (
            {"retrieve_at": "2030-01-02T00:00:00Z", "install_at": "2030-01-01T00:00:00Z"},
            "install_at",
            "cannot come before",
        ),
        ({"name": ""}, "name", "may not be blank"),
    ],
)
def test_bad_campaigns_are_400_with_the_field(world, fields, field, message):
    response = create(world, **fields)
    assert response.status_code == 400, response.content
    details = error(response)["details"]
    assert field in details, details
    assert message in details[field][0]["message"]
    assert not FirmwareCampaign.objects.exists()


def test_another_organizations_site_is_no_site(world):
    response = create(world, site=world.other.sites["Yard"].pk)
    assert response.status_code == 400
    assert error(response)["details"]["site"][0]["message"] == "No such site."


def test_another_organization_never_sees_a_campaign_and_site_hosts_may_not(world):
    pk = create(world).json()["id"]
    other = world.client(Role.OPERATOR, "other")
    assert other.get(f"/api/v1/firmware-campaigns/{pk}/").status_code == 404
    assert other.post(f"/api/v1/firmware-campaigns/{pk}/start/").status_code == 404
    assert other.get("/api/v1/firmware-campaigns/").json()["results"] == []
    assert world.client(Role.SITE_HOST).get("/api/v1/firmware-campaigns/").status_code == 403
    assert (
        world.client(Role.INTEGRATOR).post("/api/v1/firmware-campaigns/", CAMPAIGN).status_code
        == 403
    )


def test_campaigns_list_with_counts_and_filter_by_state(world):
    client = world.client(Role.OPERATOR)
    running = create(world, chargers=["ACME-1"]).json()["id"]
    client.post(f"/api/v1/firmware-campaigns/{running}/start/")
    create(world, name="later")
    rows = client.get("/api/v1/firmware-campaigns/?state=running").json()["results"]
    assert [(r["id"], r["counts"]["sent"], r["counts"]["total"]) for r in rows] == [(running, 1, 1)]
    assert client.get("/api/v1/firmware-campaigns/?state=nope").status_code == 400


# --- Diagnostics ------------------------------------------------------------------------------------


def test_diagnostics_are_requested_with_an_upload_url_and_offline_is_409(world):
    client = world.client(Role.OPERATOR)
    response = client.post(
        "/api/v1/chargers/ACME-1/diagnostics/", {"kind": "diagnostics"}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["state"], body["kind"], body["download"]) == ("requested", "diagnostics", None)
    command = Command.objects.get(pk=body["command"])
    assert command.action == "GetDiagnostics"
    assert command.payload["location"].startswith("http://testserver/uploads/")
    offline = client.post(
        "/api/v1/chargers/ACME-2/diagnostics/", {"kind": "SecurityLog"}, format="json"
    )
    assert offline.status_code == 409
    assert DiagnosticsFile.objects.count() == 1  # nothing kept of the refused request
    queued = client.post(
        "/api/v1/chargers/ACME-2/diagnostics/",
        {"kind": "diagnostics", "deliver_when_offline": True},
        format="json",
    ).json()
    assert queued["kind"] == "DiagnosticsLog"  # 2.x has GetLog only
    assert Command.objects.get(pk=queued["command"]).payload["logType"] == "DiagnosticsLog"
    bad = client.post(
        "/api/v1/chargers/ACME-1/diagnostics/",
        {"start_time": "2030-01-02T00:00:00Z", "stop_time": "2030-01-01T00:00:00Z"},
        format="json",
    )
    assert bad.status_code == 400
    assert (
        world.client(Role.OPERATOR, "other").get(f"/api/v1/diagnostics/{body['id']}/").status_code
        == 404
    )
    assert (
        client.post("/api/v1/chargers/OTHER-1/diagnostics/", {}, format="json").status_code == 404
    )
    assert world.client(Role.SITE_HOST).get("/api/v1/diagnostics/").status_code == 403


@pytest.fixture
def issued(world: World) -> tuple[DiagnosticsFile, str]:
    record = uploads.diagnostics_request(
        charger=world.acme.chargers["ACME-1"], kind="diagnostics", base_url="http://testserver"
    )
    command = Command.objects.get(pk=record.command_id)
    return record, command.payload["location"].removeprefix("http://testserver")


@override_settings(CPMS_UPLOAD_MAX_BYTES=100)
def test_an_upload_past_the_limit_is_413_and_nothing_is_kept(issued):
    record, path = issued
    client = Client()
    declared = client.put(path, b"x" * 101, content_type="application/octet-stream")
    assert declared.status_code == 413
    assert declared.json()["error"]["message"] == "The file is larger than the limit of 100 bytes."
    multipart = client.post(path, {"file": _file(b"y" * 101)})
    assert multipart.status_code == 413
    record.refresh_from_db()
    assert (record.state, record.file.name) == ("requested", "")
    fits = client.put(path, b"z" * 100, content_type="application/octet-stream")
    assert fits.status_code == 201
    record.refresh_from_db()
    assert (record.state, record.size) == ("uploaded", 100)
    record.file.delete(save=False)


def test_an_upload_without_a_file_is_400(issued):
    _, path = issued
    client = Client()
    assert client.post(path, {"note": "no file"}).status_code == 400
    empty = client.put(path, b"", content_type="application/octet-stream")
    assert (empty.status_code, empty.json()["error"]["message"]) == (400, "The upload is empty.")


def _file(content: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("diag.log", content, content_type="text/plain")


def test_the_record_takes_the_name_of_the_file_uploaded_not_the_one_announced(issued):
    """A charger may answer GetDiagnostics with one name and upload under another; whichever
    reaches the CPMS first, the record names the file it holds."""
    record, path = issued
    Command.objects.filter(pk=record.command_id).update(
        state="answered", response={"fileName": "announced.log"}
    )
    uploads.diagnostics_command_record(command_pk=record.command_id)
    record.refresh_from_db()
    assert record.file_name == "announced.log"

    response = Client().post(path, {"file": _file(b"the log\n")})
    assert response.json() == {"stored": "diag.log", "size": 8}
    record.refresh_from_db()
    assert (record.file_name, record.file.read()) == ("diag.log", b"the log\n")

    retry = Client().put(path + "retry.log", b"again\n", content_type="text/plain")
    assert retry.json() == {"stored": "retry.log", "size": 6}
    record.refresh_from_db()
    assert record.file_name == "retry.log"
    record.file.delete(save=False)
