"""Dashboard pages with the Django test client: figures, filters, exports, forms and partials."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chargers import dashboard
from chargers.models import (
    Charger,
    Connector,
    ConnectorStatus,
    Frame,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    Site,
)
from cpms.models import ApiToken, Membership, Organization, Role
from cpms.services import api_key_digest
from cpms.tenancy import Tenant, tenant_for_user
from tests.cpms.test_views import PASSWORD, make_frame, make_session, make_user

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin(organization: Organization) -> User:
    return make_user("admin", organization, Role.OPERATOR_ADMIN)


@pytest.fixture
def client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def tenant(admin: User) -> Tenant:
    tenant = tenant_for_user(admin)
    assert tenant is not None
    return tenant


def set_status(charger: Charger, connector_id: int, status: str) -> Connector:
    connector, _ = Connector.objects.update_or_create(
        charger=charger,
        connector_id=connector_id,
        defaults={"status": status, "status_at": timezone.now()},
    )
    return connector


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


# --- Sign in -------------------------------------------------------------------------------------


def test_sign_in_with_the_form_and_out_again(admin: User) -> None:
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode()
    wrong = client.post("/login/", {"username": "admin", "password": "nope"})
    assert wrong.status_code == 200
    assert "enter a correct username and password" in wrong.content.decode()
    response = client.post(
        "/login/", {"username": "admin", "password": PASSWORD, "next": "/sessions/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/sessions/"
    assert client.get("/sessions/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/sessions/").status_code == 302


def test_sign_in_refuses_a_redirect_to_another_site(admin: User) -> None:
    response = Client().post(
        "/login/", {"username": "admin", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


# --- Overview figures ----------------------------------------------------------------------------


def test_today_is_the_local_day_of_each_site(
    organization: Organization, site: Site, make_charger: Any, tenant: Tenant
) -> None:
    # 00:30 in Amsterdam on 10 March is 23:30 UTC on 9 March.
    now = datetime(2025, 3, 9, 23, 30, tzinfo=UTC)
    amsterdam = make_charger("AMS-1")  # the site fixture is in Europe/Amsterdam
    roaming = make_charger("NOSITE-1", site=None)
    make_session(
        amsterdam, "1", started_at=datetime(2025, 3, 9, 23, 15, tzinfo=UTC), energy_wh=Decimal(1500)
    )
    make_session(
        amsterdam, "2", started_at=datetime(2025, 3, 9, 22, 45, tzinfo=UTC), energy_wh=Decimal(9000)
    )
    make_session(
        roaming, "3", started_at=datetime(2025, 3, 9, 0, 5, tzinfo=UTC), energy_wh=Decimal(250)
    )
    make_session(
        roaming, "4", started_at=datetime(2025, 3, 8, 23, 55, tzinfo=UTC), energy_wh=Decimal(7000)
    )

    overview = dashboard.overview_for(tenant, now=now)

    assert overview.sessions_today == 2
    assert overview.energy_today_wh == Decimal(1750)


def test_overview_counts_chargers_and_connectors(
    organization: Organization, make_charger: Any, tenant: Tenant
) -> None:
    online = make_charger("ON-1", connected=True)
    faulted = make_charger("FAULT-1", connected=True)
    offline = make_charger("OFF-1", connected=False)
    set_status(online, 1, ConnectorStatus.CHARGING)
    set_status(online, 2, ConnectorStatus.AVAILABLE)
    set_status(faulted, 0, ConnectorStatus.FAULTED)
    set_status(faulted, 1, ConnectorStatus.AVAILABLE)
    set_status(offline, 1, ConnectorStatus.CHARGING)  # stale: the charger is gone
    make_session(online, "1", state=SessionState.ACTIVE)
    make_session(offline, "2", state=SessionState.COMPLETED)

    overview = dashboard.overview_for(tenant)

    assert (overview.chargers, overview.online, overview.offline, overview.faulted) == (3, 2, 1, 1)
    assert overview.active_sessions == 1
    assert overview.connector_counts == [("Charging", 1), ("Available", 2), ("Offline", 1)]


@pytest.mark.parametrize(
    ("connected", "statuses", "state"),
    [
        (False, {1: "Charging"}, "Offline"),
        (True, {0: "Faulted", 1: "Available"}, "Faulted"),
        (True, {1: "Charging", 2: "Faulted"}, "Faulted"),
        (True, {1: "Charging", 2: "Available"}, "Charging"),
        (True, {1: "SuspendedEV", 2: "Available"}, "Occupied"),
        (True, {1: "Available", 2: "Unavailable"}, "Available"),
        (True, {0: "Unavailable", 1: "Unavailable"}, "Unavailable"),
        (True, {}, "Online"),
    ],
)
def test_charger_state_and_the_status_filter_agree(
    make_charger: Any, connected: bool, statuses: dict[int, str], state: str
) -> None:
    charger = make_charger("CP-STATE", connected=connected)
    make_charger("CP-OTHER", connected=not connected)
    for connector_id, status in statuses.items():
        set_status(charger, connector_id, status)

    assert dashboard.charger_state(charger, charger.connectors.all()) == state
    filtered = dashboard.filter_by_state(Charger.objects.all(), state)
    if state != "Online":
        assert list(filtered.values_list("identity", flat=True)) == ["CP-STATE"]
    else:
        assert "CP-STATE" in filtered.values_list("identity", flat=True)


# --- Session charts ------------------------------------------------------------------------------


def _sample(
    session: Session, at: datetime, measurand: str, value: str, phase: str = "", location: str = ""
) -> None:
    MeterSample.objects.create(
        charger=session.charger,
        connector_number=1,
        session=session,
        timestamp=at,
        measurand=measurand,
        phase=phase,
        location=location,
        value=Decimal(value),
    )


def test_session_series_sums_phases_and_skips_ev_readings(
    make_charger: Any, tenant: Tenant
) -> None:
    start = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    session = make_session(make_charger(), "1", started_at=start, meter_start_wh=Decimal(10_000))
    _sample(session, start, ENERGY, "10000")
    for phase in ("L1-N", "L2-N", "L3-N"):
        _sample(session, start, POWER, "3700", phase=phase)
    _sample(session, start + timedelta(minutes=1), ENERGY, "10185")
    _sample(session, start + timedelta(minutes=1), POWER, "11000")
    _sample(session, start + timedelta(minutes=1), POWER, "99999", location="EV")

    series = dashboard.session_series(tenant, session)

    assert series.times == [start.timestamp(), (start + timedelta(minutes=1)).timestamp()]
    assert series.energy_kwh == [0.0, 0.185]
    assert series.power_kw == [11.1, 11.0]
    assert series.power_derived is False


def test_session_series_derives_power_from_the_register(make_charger: Any, tenant: Tenant) -> None:
    start = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    session = make_session(make_charger(), "1", started_at=start, meter_start_wh=Decimal(0))
    _sample(session, start, ENERGY, "0")
    _sample(session, start + timedelta(minutes=6), ENERGY, "1100")  # 1.1 kWh in 0.1 h

    series = dashboard.session_series(tenant, session)

    assert series.power_derived is True
    assert series.power_kw == [None, 11.0]


def test_session_series_of_another_tenant_is_empty(make_charger: Any, tenant: Tenant) -> None:
    globex = Organization.objects.create(name="Globex", slug="globex")
    foreign = Charger.objects.create(identity="GLOBEX-1", organization=globex)
    session = make_session(foreign, "1")
    _sample(session, timezone.now(), ENERGY, "1500")
    assert dashboard.session_series(tenant, session).times == []


# --- Chargers ------------------------------------------------------------------------------------


def test_chargers_paginate_sort_and_render_a_part_for_htmx(
    client: Client, make_charger: Any
) -> None:
    for n in range(30):
        make_charger(f"CP-{n:02d}", vendor="Zeta" if n == 7 else "Alfen")

    first = client.get("/chargers/").content.decode()
    assert "CP-00" in first and "CP-24" in first and "CP-25" not in first
    assert "Page 1 of 2" in first
    second = client.get("/chargers/?page=2").content.decode()
    assert "CP-25" in second and "CP-00" not in second

    by_vendor = client.get("/chargers/?sort=-vendor").content.decode()
    assert by_vendor.index("CP-07") < by_vendor.index("CP-00")

    part = client.get(
        "/chargers/?vendor=Zeta", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="charger-results"
    )
    body = part.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="charger-results"')
    assert "CP-07" in body and "CP-00" not in body
    assert "HX-Target" in part["Vary"]


def test_charger_csv_export_follows_the_filters_and_defuses_formulas(
    client: Client, make_charger: Any
) -> None:
    make_charger("CP-1", vendor='=HYPERLINK("http://evil.example")', connected=True)
    make_charger("CP-2", vendor="Alfen")
    set_status(Charger.objects.get(identity="CP-1"), 1, ConnectorStatus.FAULTED)

    rows = csv_rows(client.get("/chargers/?export=csv&status=Faulted"))

    assert [row["identity"] for row in rows] == ["CP-1"]
    assert rows[0]["state"] == "Faulted"
    assert rows[0]["vendor"].startswith("'=HYPERLINK")
    assert rows[0]["site"] == "Depot"


def test_a_charger_row_renders_alone(client: Client, charger: Charger) -> None:
    body = client.get(f"/chargers/{charger.pk}/row").content.decode()
    assert body.lstrip().startswith(f'<tr id="charger-row-{charger.pk}"')
    assert "<html" not in body


def test_charger_detail_shows_the_active_sessions_chart(client: Client, charger: Charger) -> None:
    session = make_session(charger, "77", state=SessionState.ACTIVE)
    _sample(session, timezone.now(), POWER, "7200")
    body = client.get(f"/chargers/{charger.pk}/").content.decode()
    assert f'id="series-{session.pk}"' in body
    assert '"power_kw": [7.2]' in body
    part = client.get(
        f"/chargers/{charger.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="charger-active"
    )
    assert part.content.decode().lstrip().startswith('<section id="charger-active"')


# --- Frame log -----------------------------------------------------------------------------------


def test_frame_log_filters_and_pages_back(client: Client, charger: Charger) -> None:
    for n in range(60):
        make_frame(charger, f"Action{n:02d}")
    make_frame(charger, "Heartbeat", direction="out", kind=3)
    url = f"/chargers/{charger.pk}/frames/"

    newest = client.get(url).content.decode()
    assert 'data-live="journal.frames"' in newest
    assert "Action59" in newest and "Action10" not in newest
    assert "Older frames" in newest

    older_link = newest.split('hx-get="')[-1].split('"')[0].replace("&amp;", "&")
    older = client.get(older_link).content.decode()
    assert "Action10" in older and "Action59" not in older
    assert 'data-live="journal.frames"' not in older

    sent = client.get(url + "?direction=out").content.decode()
    assert "Heartbeat" in sent and "Action59" not in sent
    by_action = client.get(url + "?action=action07").content.decode()
    assert "Action07" in by_action and "Action08" not in by_action
    results = client.get(url + "?kind=3").content.decode()
    assert "Heartbeat" in results and "Action01" not in results


def test_a_bad_frame_filter_is_a_form_error_not_a_crash(client: Client, charger: Charger) -> None:
    make_frame(charger, "Heartbeat")
    response = client.get(f"/chargers/{charger.pk}/frames/?kind=9&before=abc")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Select a valid choice" in body
    assert "Enter a number" in body


# --- Sessions ------------------------------------------------------------------------------------


def test_sessions_filter_and_export(client: Client, make_charger: Any) -> None:
    first = make_charger("CP-1")
    second = make_charger("CP-2")
    make_session(
        first,
        "1",
        started_at=datetime(2025, 5, 1, 10, tzinfo=UTC),
        state=SessionState.COMPLETED,
        energy_wh=Decimal("12345.5"),
        id_tag="ALICE",
    )
    make_session(second, "2", started_at=datetime(2025, 5, 3, 10, tzinfo=UTC), id_tag="BOB")

    active = client.get("/sessions/?state=Active").content.decode()
    assert "BOB" in active and "ALICE" not in active
    in_range = client.get(
        "/sessions/?started_from=2025-05-01&started_to=2025-05-02"
    ).content.decode()
    assert "ALICE" in in_range and "BOB" not in in_range
    searched = client.get("/sessions/?q=cp-2").content.decode()
    assert "BOB" in searched and "ALICE" not in searched

    rows = csv_rows(client.get("/sessions/?export=csv&q=ALICE"))
    assert len(rows) == 1
    assert rows[0]["charger"] == "CP-1"
    assert rows[0]["energy_wh"] == "12345.500"
    assert rows[0]["started_at"] == "2025-05-01T10:00:00Z"


def test_session_detail_has_its_chart_series(client: Client, charger: Charger) -> None:
    session = make_session(charger, "9", meter_start_wh=Decimal(0))
    _sample(session, timezone.now(), ENERGY, "2500")
    body = client.get(f"/sessions/{session.pk}/").content.decode()
    assert 'id="session-series"' in body
    assert '"energy_kwh": [2.5]' in body
    assert "Session 9" in body


# --- Sites ---------------------------------------------------------------------------------------


def test_site_maps_use_the_tile_setting_or_none(client: Client, site: Site, settings: Any) -> None:
    Site.objects.filter(pk=site.pk).update(latitude=Decimal("52.37"), longitude=Decimal("4.89"))
    settings.CPMS_MAP_TILE_URL = ""
    blank = client.get("/sites/").content.decode()
    assert '"tiles": ""' in blank
    assert '"lat": 52.37' in blank
    assert "map-blank" in blank

    settings.CPMS_MAP_TILE_URL = "https://tiles.example/{z}/{x}/{y}.png"
    tiled = client.get(f"/sites/{site.pk}/").content.decode()
    assert '"tiles": "https://tiles.example/{z}/{x}/{y}.png"' in tiled


def test_sites_without_coordinates_say_so(client: Client, site: Site) -> None:
    body = client.get("/sites/").content.decode()
    assert "No site has coordinates yet" in body
    assert "Depot" in body


# --- Id tokens -----------------------------------------------------------------------------------


def test_create_an_id_token(client: Client, organization: Organization) -> None:
    response = client.post(
        "/id-tokens/new/",
        {
            "token": " 04A2B3C4 ",
            "type": "ISO14443",
            "status": "Accepted",
            "owner_name": "Alex",
            "owner_email": "alex@example.com",
            "allow_concurrent": "on",
        },
    )
    assert response.status_code == 302
    token = IdToken.objects.get(organization=organization)
    assert (token.token, token.owner_name, token.allow_concurrent) == ("04A2B3C4", "Alex", True)
    assert "Id token 04A2B3C4 created." in client.get("/id-tokens/").content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": "TAG-OK"}, "already has an id token with this value"),
        ({"token": ""}, "This field is required"),
        ({"token": "X" * 37}, "at most 36 characters"),
        ({"token": "NEW", "owner_email": "not-an-email"}, "Enter a valid email address"),
        ({"token": "NEW", "expires_at": "2001-01-01T00:00"}, "The expiry must be in the future"),
        ({"token": "NEW", "status": "Sideways"}, "Select a valid choice"),
    ],
)
def test_a_bad_id_token_is_a_form_error_and_writes_nothing(
    client: Client, id_token: IdToken, data: dict[str, str], message: str
) -> None:
    form = {"type": "ISO14443", "status": "Accepted", **data}
    response = client.post("/id-tokens/new/", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert IdToken.objects.count() == 1


def test_block_and_unblock_an_id_token(client: Client, id_token: IdToken) -> None:
    assert client.get(f"/id-tokens/{id_token.pk}/block").status_code == 405
    response = client.post(f"/id-tokens/{id_token.pk}/block", {"next": "https://evil.example/"})
    assert response.status_code == 302
    assert response["Location"] == "/id-tokens/"
    id_token.refresh_from_db()
    assert id_token.status == "Blocked"

    row = client.post(f"/id-tokens/{id_token.pk}/unblock", HTTP_HX_REQUEST="true")
    body = row.content.decode()
    assert body.lstrip().startswith(f'<tr id="id-token-{id_token.pk}"')
    assert ">Block<" in body
    id_token.refresh_from_db()
    assert id_token.status == "Accepted"


def test_an_operator_may_manage_id_tokens_too(
    organization: Organization, id_token: IdToken
) -> None:
    client = Client()
    client.force_login(make_user("operator", organization, Role.OPERATOR))
    assert client.post(f"/id-tokens/{id_token.pk}/block").status_code == 302
    id_token.refresh_from_db()
    assert id_token.status == "Blocked"


# --- API tokens ----------------------------------------------------------------------------------


def test_create_an_api_token_shows_its_key_once(client: Client, organization: Organization) -> None:
    response = client.post("/api-tokens/", {"name": "billing export", "role": Role.INTEGRATOR})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    key = body.split('id="new-key" class="mono wide" type="text" readonly value="')[1].split('"')[0]
    token = ApiToken.objects.get(organization=organization)
    assert token.key_digest == api_key_digest(key)
    assert token.name == "billing export"
    assert key not in client.get("/api-tokens/").content.decode()


def test_a_site_host_token_needs_sites_of_the_organization(
    client: Client, organization: Organization, site: Site
) -> None:
    missing = client.post("/api-tokens/", {"name": "host", "role": Role.SITE_HOST})
    assert missing.status_code == 400
    assert "A site-host token needs at least one site" in missing.content.decode()
    globex_site = Site.objects.create(
        organization=Organization.objects.create(name="G", slug="g"), name="G"
    )
    foreign = client.post(
        "/api-tokens/", {"name": "host", "role": Role.SITE_HOST, "sites": [globex_site.pk]}
    )
    assert foreign.status_code == 400
    assert ApiToken.objects.count() == 0

    ok = client.post("/api-tokens/", {"name": "host", "role": Role.SITE_HOST, "sites": [site.pk]})
    assert ok.status_code == 200
    assert list(ApiToken.objects.get().sites.all()) == [site]


def test_revoke_an_api_token(client: Client, admin: User) -> None:
    client.post("/api-tokens/", {"name": "old", "role": Role.INTEGRATOR})
    token = ApiToken.objects.get()
    response = client.post(f"/api-tokens/{token.pk}/revoke")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token.revoked_by == admin
    assert "Revoked" in client.get("/api-tokens/").content.decode()


def test_the_organization_switcher_lists_every_membership(client: Client, admin: User) -> None:
    globex = Organization.objects.create(name="Globex Energy", slug="globex")
    Membership.objects.create(user=admin, organization=globex, role=Role.SITE_HOST)
    body = client.get("/").content.decode()
    assert "Globex Energy (Site host)" in body
    assert "Acme Charging (Operator admin)" in body


def test_the_frame_model_kinds_match_the_filter(client: Client, charger: Charger) -> None:
    # Every journal kind can be chosen in the frame log's filter.
    body = client.get(f"/chargers/{charger.pk}/frames/").content.decode()
    for value, label in Frame.Kind.choices:
        assert f'<option value="{value}">{label}</option>' in body


def test_a_page_part_whose_session_ended_sends_the_page_to_sign_in(
    db: Any, charger: Charger
) -> None:
    response = Client().get(
        f"/chargers/{charger.pk}/row",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/chargers/?vendor=Alfen",
    )
    assert response["HX-Redirect"] == "/login/?next=%2Fchargers%2F%3Fvendor%3DAlfen"
    assert b"<form" not in response.content
