"""Two organizations with everything the REST API serves, and an API token for every role.

Acme has two sites (Depot, Harbour) with one charger each; the site-host token looks after the
Depot only. Other Co has one of everything, which no Acme caller may ever see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rest_framework.test import APIClient

from chargers import services
from chargers.models import (
    Charger,
    Connector,
    Frame,
    IdToken,
    MeterSample,
    Session,
    SessionState,
    Site,
)
from cpms.models import ApiToken, Organization, Role
from cpms.services import api_token_create

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class Tenancy:
    organization: Organization
    sites: dict[str, Site] = field(default_factory=dict)
    chargers: dict[str, Charger] = field(default_factory=dict)
    connectors: dict[str, Connector] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    samples: dict[str, list[MeterSample]] = field(default_factory=dict)
    frames: dict[str, list[Frame]] = field(default_factory=dict)
    id_tokens: list[IdToken] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)


@dataclass
class World:
    acme: Tenancy
    other: Tenancy

    def client(self, role: str, tenancy: str = "acme") -> APIClient:
        return token_client(getattr(self, tenancy).keys[role])


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _charger_with_data(tenancy: Tenancy, identity: str, site: Site, tag: str) -> None:
    charger = services.charger_create(
        identity=identity,
        organization=tenancy.organization,
        password="a-charger-password-1",
        site=site,
    )
    tenancy.chargers[identity] = charger
    tenancy.connectors[identity] = Connector.objects.create(
        charger=charger, connector_id=1, status="Available", status_at=T0
    )
    session = Session.objects.create(
        charger=charger,
        connector=tenancy.connectors[identity],
        connector_number=1,
        transaction_id=f"{identity}-tx",
        start_key=f"{identity}-start",
        id_tag=tag,
        started_at=T0,
        meter_start_wh=Decimal("1000"),
        state=SessionState.ACTIVE,
        ocpp_version="1.6",
    )
    tenancy.sessions[identity] = session
    tenancy.samples[identity] = [
        MeterSample.objects.create(
            charger=charger,
            connector_number=1,
            session=session,
            timestamp=T0 + timedelta(minutes=minute),
            measurand=measurand,
            value=Decimal(value),
            unit=unit,
        )
        for minute, measurand, value, unit in [
            (1, "Energy.Active.Import.Register", "1500", "Wh"),
            (1, "Power.Active.Import", "7200", "W"),
            (2, "Energy.Active.Import.Register", "2100", "Wh"),
        ]
    ]
    frames = []
    for minute, action in enumerate(["BootNotification", "StatusNotification", "Heartbeat"]):
        message_id = f"{identity}-{minute}"
        frames.append(
            Frame.objects.create(
                charger=charger,
                charger_identity=identity,
                direction=Frame.Direction.IN,
                kind=Frame.Kind.CALL,
                message_id=message_id,
                action=action,
                raw=json.dumps([2, message_id, action, {}]),
                timestamp=T0 + timedelta(minutes=minute),
            )
        )
    tenancy.frames[identity] = frames


def _tokens(tenancy: Tenancy, site_host_sites: list[Site]) -> None:
    for role in Role.values:
        token, key = api_token_create(
            organization=tenancy.organization,
            name=f"{role} client",
            role=role,
            sites=site_host_sites if role == Role.SITE_HOST else (),
        )
        tenancy.tokens[role] = token
        tenancy.keys[role] = key


def build_world() -> World:
    acme = Tenancy(Organization.objects.create(name="Acme Charging", slug="acme"))
    for name in ["Depot", "Harbour"]:
        acme.sites[name] = Site.objects.create(
            organization=acme.organization, name=name, time_zone="Europe/Amsterdam"
        )
    _charger_with_data(acme, "ACME-1", acme.sites["Depot"], "ACME-TAG-1")
    _charger_with_data(acme, "ACME-2", acme.sites["Harbour"], "ACME-TAG-2")
    acme.id_tokens = [
        services.id_token_create(organization=acme.organization, token=token)
        for token in ["ACME-TAG-1", "ACME-TAG-2"]
    ]
    _tokens(acme, [acme.sites["Depot"]])

    other = Tenancy(Organization.objects.create(name="Other Co", slug="other"))
    other.sites["Yard"] = Site.objects.create(organization=other.organization, name="Yard")
    _charger_with_data(other, "OTHER-1", other.sites["Yard"], "OTHER-TAG")
    other.id_tokens = [services.id_token_create(organization=other.organization, token="OTHER-TAG")]
    _tokens(other, [other.sites["Yard"]])
    return World(acme=acme, other=other)


def all_pages(client: APIClient, url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        items.extend(body["results"])
        url = body["next"]
    return items
