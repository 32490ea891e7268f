"""Dashboard pages of firmware campaigns and the diagnostics panel: who may open them, what
another organization never sees, form errors, the preview and the controls. The browser test
(tests/e2e/test_firmware_dashboard.py) follows a campaign and an upload live."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chargers import firmware_services
from chargers.models import Charger, Command, DiagnosticsFile, FirmwareCampaign, Site
from cpms.models import Membership, Organization, Role

pytestmark = pytest.mark.django_db

FORM = {
    "name": "2.0.0",
    "location": "https://fw.example.com/2.0.0.bin",
    "firmware_version": "2.0.0",
    "canary_count": "1",
    "wave_size": "10",
    "max_failure_percent": "25",
    "target_timeout_minutes": "30",
    "deliver_when_offline": "on",
}


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


@pytest.fixture
def operator(organization: Organization) -> Client:
    return member("olga", organization, Role.OPERATOR)


@pytest.fixture
def chargers(make_charger: Any) -> list[Charger]:
    return [
        make_charger(
            identity, connected=True, ocpp_version="1.6", vendor=vendor, firmware_version="1.0"
        )
        for identity, vendor in [("CP-A", "ACME"), ("CP-B", "ACME"), ("CP-C", "Other")]
    ]


def test_an_operator_creates_a_campaign_with_a_filter_and_sees_its_preview(operator, chargers):
    preview = operator.get("/firmware/preview/", {"vendor": "ACME"})
    assert "<strong data-preview-count>2</strong> chargers match now" in preview.content.decode()
    response = operator.post("/firmware/new/", {**FORM, "vendor": "ACME"})
    campaign = FirmwareCampaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/firmware/{campaign.pk}/"
    assert (campaign.vendor, campaign.max_failure_ratio, campaign.target_timeout) == (
        "ACME",
        pytest.approx(0.25),
        1800,
    )
    page = operator.get(f"/firmware/{campaign.pk}/").content.decode()
    assert "vendor ACME" in page
    assert ">Start</button>" in page
    started = operator.post(f"/firmware/{campaign.pk}/start")
    assert started.status_code == 302
    campaign.refresh_from_db()
    assert campaign.state == "running"
    assert Command.objects.filter(action="UpdateFirmware").count() == 1
    again = operator.post(f"/firmware/{campaign.pk}/start", follow=True)
    assert "only a draft can start" in again.content.decode()
    assert operator.post(f"/firmware/{campaign.pk}/explode").status_code == 404


def test_campaign_form_errors_are_shown_and_nothing_is_created(operator, chargers):
    response = operator.post(
        "/firmware/new/",
        {**FORM, "location": "javascript:alert(1)", "max_failure_percent": "120", "signature": "x"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid URL." in page
    assert "Ensure this value is less than or equal to 100." in page
    assert "Give the signature and the signing certificate together." in page
    assert not FirmwareCampaign.objects.exists()


def test_site_hosts_and_other_organizations_do_not_get_campaigns(organization, site, chargers):
    campaign = firmware_services.firmware_campaign_create(
        organization_id=organization.pk, name="x", location="https://fw.example.com/x.bin"
    )
    host = member("hal", organization, Role.SITE_HOST, (site,))
    assert host.get("/firmware/").status_code == 403
    stranger_org = Organization.objects.create(name="Else", slug="else")
    stranger = member("sam", stranger_org, Role.OPERATOR)
    assert stranger.get(f"/firmware/{campaign.pk}/").status_code == 404
    assert stranger.post(f"/firmware/{campaign.pk}/cancel").status_code == 404
    assert "No firmware campaign yet." in stranger.get("/firmware/").content.decode()


def test_the_diagnostics_panel_asks_for_a_file_and_says_when_the_charger_is_offline(
    operator, chargers, make_charger
):
    charger = chargers[0]
    page = operator.get(f"/chargers/{charger.pk}/").content.decode()
    assert 'id="charger-diagnostics"' in page
    panel = operator.post(
        f"/firmware/chargers/{charger.pk}/diagnostics/",
        {"kind": "diagnostics"},
        headers={"HX-Request": "true", "HX-Target": "charger-diagnostics"},
    )
    assert panel.status_code == 200
    record = DiagnosticsFile.objects.get()
    assert f'id="diagnostics-{record.pk}"' in panel.content.decode()
    assert (
        Command.objects.get(pk=record.command_id)
        .payload["location"]
        .startswith("http://testserver/uploads/")
    )
    offline = make_charger("CP-OFF", connected=False, ocpp_version="1.6")
    refused = operator.post(
        f"/firmware/chargers/{offline.pk}/diagnostics/",
        {"kind": "SecurityLog"},
        headers={"HX-Request": "true", "HX-Target": "charger-diagnostics"},
    )
    assert "CP-OFF is offline, so nothing was asked." in refused.content.decode()
    assert DiagnosticsFile.objects.count() == 1
    assert operator.get(f"/firmware/diagnostics/{record.pk}/download").status_code == 404
    host = member("hal", charger.organization, Role.SITE_HOST, (charger.site,))
    host_page = host.get(f"/chargers/{charger.pk}/")
    assert host_page.status_code == 200
    assert 'id="charger-diagnostics"' not in host_page.content.decode()
    assert host.get(f"/firmware/diagnostics/{record.pk}/download").status_code == 403
