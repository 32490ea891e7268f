"""Firmware campaign services on the database: targets from the filter, waves, offline chargers,
what chargers report, timeouts, halts, pause, resume and cancel, and the live event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chargers import firmware_services as fw
from chargers.events import domain_event
from chargers.models import Alert, Charger, Command, FirmwareCampaign, FirmwareTarget, Site
from cpms.models import Organization

pytestmark = pytest.mark.django_db

LOCATION = "https://fw.example.com/2.0.0.bin"


@pytest.fixture
def online(make_charger: Any) -> Any:
    def make(identity: str, version: str = "1.6", **fields: Any) -> Charger:
        fields.setdefault("connected", True)
        fields.setdefault("vendor", "ACME")
        fields.setdefault("model", "Wallbox")
        fields.setdefault("firmware_version", "1.0.0")
        return make_charger(identity, ocpp_version=version, **fields)

    return make


def campaign(organization: Organization, **fields: Any) -> FirmwareCampaign:
    fields.setdefault("name", "rollout")
    fields.setdefault("location", LOCATION)
    return fw.firmware_campaign_create(organization_id=organization.pk, **fields)


def states(c: FirmwareCampaign) -> dict[str, tuple[int, str]]:
    return {
        t.charger.identity: (t.wave, t.state)
        for t in FirmwareTarget.objects.filter(campaign=c).select_related("charger")
    }


def report(identity: str, status: str, request_id: int | None = None) -> None:
    fw.firmware_status_record(
        charger_pk=Charger.objects.get(identity=identity).pk, status=status, request_id=request_id
    )


def test_the_filter_selects_by_site_vendor_model_version_and_list(organization, site, online):
    other_site = Site.objects.create(organization=organization, name="Other")
    a = online("A")
    online("B", vendor="Other")
    online("C", model="Pole")
    online("D", firmware_version="0.9")
    online("E", site=other_site)
    online("F", firmware_version="2.0.0")  # runs the new version already
    foreign = Organization.objects.create(name="Foreign", slug="foreign")
    Charger.objects.create(organization=foreign, identity="X", vendor="ACME", model="Wallbox")

    def matching(**fields: Any) -> list[str]:
        target_filter = fw.TargetFilter(organization_id=organization.pk, **fields)
        return list(fw.chargers_matching(target_filter).values_list("identity", flat=True))

    assert matching() == ["A", "B", "C", "D", "E", "F"]
    assert matching(firmware_version="2.0.0") == ["A", "B", "C", "D", "E"]
    assert matching(site_id=site.pk, vendor="acme", model="wallbox") == ["A", "D", "F"]
    assert matching(current_firmware_version="1.0.0", site_id=site.pk, vendor="ACME") == ["A", "C"]
    assert matching(charger_ids=(a.pk,)) == ["A"]


def test_starting_resolves_targets_sends_the_canary_and_refuses_a_second_start(
    organization, online
):
    for identity in ("A", "B", "C"):
        online(identity)
    c = campaign(organization, canary_count=1, wave_size=5)
    fw.firmware_campaign_start(campaign_pk=c.pk)
    c.refresh_from_db()
    assert (c.state, c.current_wave) == ("running", 0)
    assert states(c) == {"A": (0, "sent"), "B": (1, "pending"), "C": (1, "pending")}
    command = Command.objects.get()
    assert (command.charger.identity, command.action, command.system) == (
        "A",
        "UpdateFirmware",
        f"firmware campaign {c.pk}",
    )
    with pytest.raises(fw.CampaignRefused, match="only a draft can start"):
        fw.firmware_campaign_start(campaign_pk=c.pk)


def test_a_campaign_without_a_matching_charger_does_not_start(organization, online):
    online("A")
    c = campaign(organization, vendor="Nobody")
    with pytest.raises(fw.CampaignRefused, match="No charger matches"):
        fw.firmware_campaign_start(campaign_pk=c.pk)
    c.refresh_from_db()
    assert c.state == "draft"
    assert not FirmwareTarget.objects.exists()


def test_offline_chargers_are_queued_or_skipped_and_unknown_ones_skipped(organization, online):
    online("ON")
    online("OFF", connected=False)
    online("NEW", version="", connected=False)
    queued = campaign(organization, canary_count=3)
    fw.firmware_campaign_start(campaign_pk=queued.pk)
    assert states(queued) == {"NEW": (0, "skipped"), "OFF": (0, "sent"), "ON": (0, "sent")}
    off = FirmwareTarget.objects.get(campaign=queued, charger__identity="OFF")
    assert off.command is not None and off.command.state == "queued"
    assert off.reason == "Queued until the charger connects."
    new = FirmwareTarget.objects.get(campaign=queued, charger__identity="NEW")
    assert new.reason == "The charger has never connected."

    skipping = campaign(organization, name="no queue", canary_count=3, deliver_when_offline=False)
    fw.firmware_campaign_start(campaign_pk=skipping.pk)
    assert states(skipping)["OFF"] == (0, "skipped")


def test_notifications_move_targets_and_success_sends_the_next_wave(organization, online):
    online("A")
    online("B")
    c = campaign(organization, canary_count=1, wave_size=1)
    fw.firmware_campaign_start(campaign_pk=c.pk)
    report("A", "Downloading")
    assert states(c)["A"] == (0, "in_progress")
    report("A", "Idle")  # changes nothing
    assert states(c)["A"] == (0, "in_progress")
    report("A", "Installed")
    assert states(c) == {"A": (0, "succeeded"), "B": (1, "sent")}
    report("B", "Installed")
    c.refresh_from_db()
    assert c.state == "completed"
    assert c.finished_at is not None


def test_2x_notifications_are_matched_by_request_id(organization, online):
    online("A", version="2.0.1")
    c = campaign(organization)
    fw.firmware_campaign_start(campaign_pk=c.pk)
    target = FirmwareTarget.objects.get(campaign=c)
    assert target.request_id == target.pk
    assert target.command is not None and target.command.payload["requestId"] == target.pk
    report("A", "InstallationFailed", request_id=target.pk + 1000)  # another request's
    assert states(c)["A"] == (0, "sent")
    report("A", "Installed", request_id=target.pk)
    assert states(c)["A"] == (0, "succeeded")


def test_a_refused_request_fails_its_target_and_halts_the_campaign(organization, online):
    online("A", version="2.0.1")
    online("B", version="2.0.1")
    c = campaign(organization, canary_count=1)
    fw.firmware_campaign_start(campaign_pk=c.pk)
    target = FirmwareTarget.objects.get(campaign=c, wave=0)
    assert target.command is not None
    Command.objects.filter(pk=target.command.pk).update(
        state="rejected", response_status="InvalidCertificate"
    )
    fw.firmware_command_record(command_pk=target.command.pk)
    target.refresh_from_db()
    assert (target.state, target.reason) == ("failed", "The charger answered InvalidCertificate.")
    c.refresh_from_db()
    assert c.state == "halted"
    assert c.halt_reason == "1 of 1 targets failed (100%), above the allowed 20%"
    assert states(c)["B"] == (1, "pending")
    alert = Alert.objects.get(charger__identity="A", kind="firmware_failed")
    assert alert.state == "open"
    assert alert.message == (
        "The firmware update request failed: The charger answered InvalidCertificate."
    )
    assert alert.details == {"campaign": c.pk, "target": target.pk}


def test_a_boot_with_the_new_version_is_a_success(organization, online):
    a = online("A")
    c = campaign(organization, firmware_version="2.0.0")
    fw.firmware_campaign_start(campaign_pk=c.pk)
    assert fw.firmware_boot_record(charger_pk=a.pk) is None  # still the old version
    Charger.objects.filter(pk=a.pk).update(firmware_version="2.0.0")
    assert fw.firmware_boot_record(charger_pk=a.pk) is not None
    target = FirmwareTarget.objects.get(campaign=c)
    assert (target.state, target.reason) == ("succeeded", "Booted with firmware 2.0.0.")


def test_a_failed_update_raises_an_alert_that_a_later_success_resolves(organization, online):
    online("A")
    first = campaign(organization, name="first")
    fw.firmware_campaign_start(campaign_pk=first.pk)
    report("A", "DownloadFailed")
    alert = Alert.objects.get(charger__identity="A", kind="firmware_failed")
    assert (alert.state, alert.message) == ("open", "The firmware update reported DownloadFailed.")
    second = campaign(organization, name="second")
    fw.firmware_campaign_start(campaign_pk=second.pk)
    report("A", "Installed")
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_targets_time_out_and_the_timeouts_count_as_failures(organization, online):
    online("A")
    online("B")
    c = campaign(organization, target_timeout=600, canary_count=1)
    fw.firmware_campaign_start(campaign_pk=c.pk)
    now = timezone.now()
    assert fw.firmware_campaigns_tick(now=now + timedelta(seconds=599)) == 0
    report("A", "Downloading")  # progress restarts the clock
    assert fw.firmware_campaigns_tick(now=timezone.now() + timedelta(seconds=599)) == 0
    assert fw.firmware_campaigns_tick(now=timezone.now() + timedelta(seconds=601)) == 1
    target = FirmwareTarget.objects.get(campaign=c, wave=0)
    assert (target.state, target.reason) == ("timed_out", "No outcome within 600 s.")
    c.refresh_from_db()
    assert c.state == "halted"


def test_pause_resume_and_cancel(organization, online):
    for identity in ("A", "B", "C"):
        online(identity)
    c = campaign(organization, canary_count=1, wave_size=1, max_failure_ratio="0")
    fw.firmware_campaign_start(campaign_pk=c.pk)
    fw.firmware_campaign_pause(campaign_pk=c.pk)
    report("A", "Installed")  # still recorded while paused
    assert states(c) == {"A": (0, "succeeded"), "B": (1, "pending"), "C": (2, "pending")}
    fw.firmware_campaign_resume(campaign_pk=c.pk)
    assert states(c)["B"] == (1, "sent")
    report("B", "DownloadFailed")
    c.refresh_from_db()
    assert c.state == "halted"
    fw.firmware_campaign_resume(campaign_pk=c.pk)  # the failure is accepted
    c.refresh_from_db()
    assert (c.state, c.halt_baseline_wave, c.halt_reason) == ("running", 2, "")
    assert states(c)["C"] == (2, "sent")
    fw.firmware_campaign_cancel(campaign_pk=c.pk)
    report("C", "Installed")  # a charger already updating still reports
    c.refresh_from_db()
    assert c.state == "cancelled"
    assert states(c)["C"] == (2, "succeeded")
    with pytest.raises(fw.CampaignRefused, match="cancelled cannot become running"):
        fw.firmware_campaign_resume(campaign_pk=c.pk)


def test_every_change_is_published_with_counts(
    organization, online, django_capture_on_commit_callbacks
):
    online("A")
    seen: list[tuple[str, dict[str, Any]]] = []

    def receiver(sender: str, **kwargs: Any) -> None:
        if sender == fw.EVENT_KIND:
            seen.append((kwargs["charger"], kwargs["data"]))

    domain_event.connect(receiver, dispatch_uid="test-firmware-events")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            c = campaign(organization)
        with django_capture_on_commit_callbacks(execute=True):
            fw.firmware_campaign_start(campaign_pk=c.pk)
    finally:
        domain_event.disconnect(dispatch_uid="test-firmware-events")
    assert seen[-1][0] == ""
    assert seen[-1][1]["campaign"] == c.pk
    assert seen[-1][1]["state"] == "running"
    assert seen[-1][1]["counts"]["sent"] == 1
    assert seen[-1][1]["counts"]["total"] == 1


def test_a_campaign_for_a_list_whose_chargers_are_gone_targets_nothing(organization, online):
    listed = online("LISTED")
    online("BYSTANDER")
    c = campaign(organization, chargers=[listed])
    listed.delete()
    with pytest.raises(fw.CampaignRefused, match="No charger matches"):
        fw.firmware_campaign_start(campaign_pk=c.pk)
    assert not Command.objects.exists()


def test_a_site_with_a_campaign_is_not_deleted_from_under_it(organization, site, online):
    from django.db.models import ProtectedError

    online("A")
    campaign(organization, site_id=site.pk)
    with pytest.raises(ProtectedError):
        site.delete()
