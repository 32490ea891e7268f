"""A mixed fleet on one site: a 1.6 and a 2.0.1 charger, simulated over real sockets, produce
sessions that look the same everywhere but their OCPP version."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from chargers import selectors
from chargers.models import IdToken, MeterSample, Session, SessionState
from chargers.simulator import FleetConfig, SimulatedCharger, SimulatedCharger201, Stats
from cpms.models import Role
from cpms.tenancy import Tenant
from tests.conftest import CHARGER_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Fields that may (and must) differ: the protocol, and the ids and times of each session.
DIFFERENT = {
    "id",
    "charger",
    "connector",
    "transaction_id",
    "ocpp_version",
    "start_key",
    "id_token",
}


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def config(server, protocol: str) -> FleetConfig:
    return FleetConfig(
        url=server.ocpp_url,
        password=CHARGER_PASSWORD,
        connectors=1,
        meter_interval=0.05,
        session_minutes=0.005,
        power_kw=3600.0,
        id_tags=["TAG-OK"],
        protocol=protocol,
        reconnect=False,
    )


async def one_session(charger: SimulatedCharger) -> None:
    async with charger.connected():
        assert await charger.boot() == "Accepted"
        await charger.report_statuses()
        await charger.session(1, "TAG-OK")


def filled(session: Session) -> set[str]:
    return {
        field.name
        for field in Session._meta.concrete_fields
        if getattr(session, field.attname) not in (None, "", [], {})
    }


async def test_16_and_201_sessions_look_the_same(
    server, make_charger, organization, site, id_token
):
    # One driver's card may run two sessions at once here (the fleet charges in parallel).
    await sync_to_async(IdToken.objects.filter(pk=id_token.pk).update)(allow_concurrent=True)
    old = await sync_to_async(make_charger)("MIX-16")
    new = await sync_to_async(make_charger)("MIX-201")
    stats = Stats()
    await asyncio.gather(
        one_session(
            SimulatedCharger(old.identity, config(server, "ocpp1.6"), stats, random.Random(1))
        ),
        one_session(
            SimulatedCharger201(new.identity, config(server, "ocpp2.0.1"), stats, random.Random(2))
        ),
    )
    assert (stats.errors, stats.sessions_stopped) == (0, 2)

    def sessions() -> dict[str, Session]:
        tenant = Tenant(organization_id=organization.pk, role=Role.OPERATOR)
        found = selectors.sessions_for(tenant).filter(charger__site=site).select_related("charger")
        return {s.ocpp_version: s for s in found}

    by_version = await sync_to_async(sessions)()
    assert set(by_version) == {"1.6", "2.0.1"}
    v16, v201 = by_version["1.6"], by_version["2.0.1"]
    assert filled(v16) == filled(v201)
    for field in Session._meta.concrete_fields:
        if field.name in DIFFERENT or field.name.endswith("_at") or field.name.endswith("_wh"):
            continue
        assert getattr(v16, field.attname) == getattr(v201, field.attname), field.name
    for session in (v16, v201):
        assert session.state == SessionState.COMPLETED
        assert session.id_token_id == id_token.pk
        assert session.energy_wh > 0
        # Same energy semantics: the register difference between start and stop, in Wh.
        assert session.energy_wh == session.meter_stop_wh - session.meter_start_wh
        assert session.stopped_at >= session.started_at

    def register_readings(session: Session) -> set[tuple[str, str]]:
        return set(
            MeterSample.objects.filter(
                session=session, measurand="Energy.Active.Import.Register"
            ).values_list("unit", "location")
        )

    # Readings land in the same units, whatever each version sent them in.
    assert (
        await sync_to_async(register_readings)(v16)
        == await sync_to_async(register_readings)(v201)
        == {("Wh", "Outlet")}
    )

    def power_units() -> set[tuple[str, str]]:
        return set(
            MeterSample.objects.filter(measurand="Power.Active.Import").values_list(
                "unit", "raw_unit"
            )
        )

    assert await sync_to_async(power_units)() == {("W", "kW"), ("W", "W")}
    assert Decimal(0) < v201.energy_wh

    # The REST API and the dashboard show both sessions the same way, but for the protocol.
    def through_the_api_and_dashboard() -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client
        from rest_framework.test import APIClient

        from cpms.models import Membership
        from cpms.services import api_token_create

        _, key = api_token_create(organization=organization, name="mixed fleet")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        shown = {}
        for session in (v16, v201):
            response = api.get(f"/api/v1/sessions/{session.pk}/")
            assert response.status_code == 200, response.content
            shown[session.ocpp_version] = response.json()
        assert shown["1.6"].keys() == shown["2.0.1"].keys()
        assert {k for k, v in shown["1.6"].items() if v in (None, "", [])} == {
            k for k, v in shown["2.0.1"].items() if v in (None, "", [])
        }
        for name in ("state", "stop_reason", "auth_status", "id_tag", "connector_number"):
            if name in shown["1.6"]:
                assert shown["1.6"][name] == shown["2.0.1"][name], name

        user = get_user_model().objects.create_user("mixed-operator", password="pw-mixed-1")
        Membership.objects.create(user=user, organization=organization, role=Role.OPERATOR)
        browser = Client()
        browser.force_login(user)
        for session in (v16, v201):
            page = browser.get(f"/sessions/{session.pk}/")
            assert page.status_code == 200
            assert session.transaction_id.encode() in page.content
        listing = browser.get("/sessions/").content
        assert b"2 in all" in listing
        assert all(f"/sessions/{s.pk}/".encode() in listing for s in (v16, v201))

    await sync_to_async(through_the_api_and_dashboard)()
