"""The REST API of billing records: tenancy, disputes and credit notes, statements, accounts,
energy prices and cost display rules, and the clear 400s for bad input (which change nothing)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader

from billing.models import Cdr, CreditNote, EnergyPrice, SiteHost, Statement
from cpms.models import Role
from tests.billing.records import cdr_for, ended_session
from tests.billing.worker import celery_worker, wait_for  # noqa: F401
from tests.cpms.api_world import World, all_pages, build_world

MARCH_9 = datetime(2024, 3, 9, 12, tzinfo=UTC)


@pytest.fixture
def world(transactional_db: Any) -> World:
    # Committed: a Celery worker (on PostgreSQL + Redis) reads what the test wrote.
    return build_world()


@pytest.fixture
def cdrs(world: World) -> dict[str, Cdr]:
    made = {}
    for name, tenancy in (("ACME-1", world.acme), ("ACME-2", world.acme), ("OTHER-1", world.other)):
        session = ended_session(tenancy.chargers[name], stopped_at=MARCH_9)
        made[name] = cdr_for(session, total_excl_vat=Decimal("10.00"))
    return made


def error_details(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    return response.json()["error"]["details"]


def test_cdrs_are_seen_by_tenant_with_their_lines(world: World, cdrs: dict[str, Cdr]) -> None:
    operator = world.client(Role.OPERATOR)
    listed = all_pages(operator, "/api/v1/cdrs/")
    assert sorted(c["charger"] for c in listed) == ["ACME-1", "ACME-2"]
    host = all_pages(world.client(Role.SITE_HOST), "/api/v1/cdrs/")
    assert [c["charger"] for c in host] == ["ACME-1"]
    detail = operator.get(f"/api/v1/cdrs/{cdrs['ACME-1'].pk}/").json()
    assert detail["total_incl_vat"] == "12.10"
    assert detail["lines"][0]["component"] == "ENERGY"
    assert detail["lines"][0]["amount_excl_vat"] == "10.00"
    assert operator.get(f"/api/v1/cdrs/{cdrs['OTHER-1'].pk}/").status_code == 404
    by_site = all_pages(operator, f"/api/v1/cdrs/?site={world.acme.sites['Harbour'].pk}")
    assert [c["charger"] for c in by_site] == ["ACME-2"]
    assert all_pages(operator, "/api/v1/cdrs/?since=2024-03-10T00:00:00Z") == []
    assert operator.get("/api/v1/cdrs/?since=yesterday").status_code == 400


def test_dispute_reject_and_credit(world: World, cdrs: dict[str, Cdr]) -> None:
    operator = world.client(Role.OPERATOR)
    cdr = cdrs["ACME-1"]
    assert "reason" in error_details(
        operator.post("/api/v1/disputes/", {"cdr": cdr.pk, "reason": "  "}, format="json")
    )
    assert "cdr" in error_details(
        operator.post(
            "/api/v1/disputes/", {"cdr": cdrs["OTHER-1"].pk, "reason": "x"}, format="json"
        )
    )
    created = operator.post(
        "/api/v1/disputes/", {"cdr": cdr.pk, "reason": "I was charged twice"}, format="json"
    )
    assert created.status_code == 201, created.content
    dispute_id = created.json()["id"]
    assert "cdr" in error_details(
        operator.post("/api/v1/disputes/", {"cdr": cdr.pk, "reason": "again"}, format="json")
    )
    # More than the CDR's total cannot be credited; nothing is written.
    too_much = operator.post(
        f"/api/v1/disputes/{dispute_id}/resolve/",
        {"outcome": "credited", "resolution": "refund", "amount_incl_vat": "12.11"},
        format="json",
    )
    assert "amount_incl_vat" in error_details(too_much)
    assert not CreditNote.objects.exists()
    credited = operator.post(
        f"/api/v1/disputes/{dispute_id}/resolve/",
        {"outcome": "credited", "resolution": "Charged twice: refunded", "amount_incl_vat": "6.05"},
        format="json",
    )
    assert credited.status_code == 200, credited.content
    note = credited.json()["credit_note"]
    assert note["number"] == "CN-000001"
    # 6.05 incl. VAT of a 10.00 + 21 % CDR: 5.00 excl. VAT and 1.05 VAT
    assert (note["amount_excl_vat"], note["vat"], note["amount_incl_vat"]) == (
        "5.00",
        "1.05",
        "6.05",
    )
    assert credited.json()["state"] == "credited"
    again = operator.post(
        f"/api/v1/disputes/{dispute_id}/resolve/",
        {"outcome": "rejected", "resolution": "no"},
        format="json",
    )
    assert "outcome" in error_details(again)

    # A second dispute on the same CDR can credit at most what is left.
    second = operator.post("/api/v1/disputes/", {"cdr": cdr.pk, "reason": "rest"}, format="json")
    left = operator.post(
        f"/api/v1/disputes/{second.json()['id']}/resolve/",
        {"outcome": "credited", "resolution": "rest"},
        format="json",
    )
    assert left.json()["credit_note"]["amount_incl_vat"] == "6.05"
    assert left.json()["credit_note"]["number"] == "CN-000002"

    other = operator.post(
        "/api/v1/disputes/", {"cdr": cdrs["ACME-2"].pk, "reason": "wrong time"}, format="json"
    )
    rejected = operator.post(
        f"/api/v1/disputes/{other.json()['id']}/resolve/",
        {"outcome": "rejected", "resolution": "The meter values are consistent."},
        format="json",
    )
    assert rejected.json()["state"] == "rejected" and rejected.json()["credit_note"] is None

    # Acme: 2 ended sessions with CDRs and 2 disputed (the world's own sessions are running).
    rate = operator.get("/api/v1/dispute-rate/").json()
    assert rate == {"sessions": 2, "disputed": 2, "percent": "100.00"}
    host_rate = world.client(Role.SITE_HOST).get("/api/v1/dispute-rate/").json()
    assert host_rate == {"sessions": 1, "disputed": 1, "percent": "100.00"}
    assert world.client(Role.OPERATOR, "other").get("/api/v1/dispute-rate/").json()["disputed"] == 0
    # Site hosts read disputes on their sites but do not open them.
    host = world.client(Role.SITE_HOST)
    assert [d["cdr"] for d in all_pages(host, "/api/v1/disputes/")] == [cdr.pk, cdr.pk]
    assert (
        host.post("/api/v1/disputes/", {"cdr": cdr.pk, "reason": "x"}, format="json").status_code
        == 403
    )


def test_statement_for_a_site_host(world: World, cdrs: dict[str, Cdr], celery_worker: None) -> None:  # noqa: F811
    operator = world.client(Role.OPERATOR)
    depot, harbour = world.acme.sites["Depot"], world.acme.sites["Harbour"]
    cdr_for(
        ended_session(world.acme.chargers["ACME-1"], stopped_at=MARCH_9),
        total_excl_vat=Decimal("3.33"),
    )
    bad = operator.post(
        "/api/v1/site-hosts/",
        {
            "name": "Harbour BV",
            "sites": [world.other.sites["Yard"].pk],
            "platform_fee_percent": "12.5",
        },
        format="json",
    )
    assert "sites" in error_details(bad)
    assert "platform_fee_percent" in error_details(
        operator.post(
            "/api/v1/site-hosts/",
            {"name": "Depot BV", "sites": [depot.pk], "platform_fee_percent": "120"},
            format="json",
        )
    )
    assert not SiteHost.objects.exists()
    host = operator.post(
        "/api/v1/site-hosts/",
        {"name": "Depot BV", "sites": [depot.pk], "platform_fee_percent": "12.5"},
        format="json",
    )
    assert host.status_code == 201, host.content
    operator.post(
        "/api/v1/site-hosts/",
        {"name": "Harbour BV", "sites": [harbour.pk], "platform_fee_percent": "10"},
        format="json",
    )
    assert "month" in error_details(
        operator.post(
            "/api/v1/statements/generate/",
            {"site_host": host.json()["id"], "month": "2024-13"},
            format="json",
        )
    )
    queued = operator.post(
        "/api/v1/statements/generate/",
        {"site_host": host.json()["id"], "month": "2024-03"},
        format="json",
    )
    assert queued.status_code == 202
    statement = wait_for(
        lambda: Statement.objects.filter(site_host_id=host.json()["id"]).first(), what="statement"
    )
    # Depot: 10.00 + 3.33 = 13.33 revenue; fee 12.5 % = 1.66625 -> 1.67; payout 11.66
    assert statement.number == "STM-000001"
    assert (statement.sessions, statement.revenue_excl_vat) == (2, Decimal("13.33"))
    assert (statement.platform_fee, statement.payout) == (Decimal("1.67"), Decimal("11.66"))

    site_host = world.client(Role.SITE_HOST)
    seen = all_pages(site_host, "/api/v1/statements/")
    assert [s["number"] for s in seen] == ["STM-000001"]
    assert seen[0]["lines"][0]["site_name"] == "Depot"
    pdf = site_host.get(f"/api/v1/statements/{statement.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "STM-000001" in text and "11.66" in text and "1.67" in text
    csv_text = site_host.get(f"/api/v1/statements/{statement.pk}/csv/").content.decode()
    assert "TOTAL,2,20.000,13.33,1.67,11.66,EUR" in csv_text
    # Customer invoices are not the site host's.
    assert site_host.get("/api/v1/invoices/").status_code == 403


def test_accounts_invoices_over_the_api(world: World, celery_worker: None) -> None:  # noqa: F811
    operator = world.client(Role.OPERATOR)
    tag1, tag2 = world.acme.id_tokens
    account = operator.post(
        "/api/v1/customer-accounts/", {"name": "Jane", "id_tokens": [tag1.pk]}, format="json"
    )
    assert account.status_code == 201, account.content
    assert account.json()["id_tokens"] == [tag1.pk]
    taken = operator.post(
        "/api/v1/customer-accounts/",
        {"name": "John", "id_tokens": [tag1.pk, tag2.pk]},
        format="json",
    )
    assert "id_tokens" in error_details(taken)
    foreign = operator.post(
        "/api/v1/customer-accounts/",
        {"name": "John", "id_tokens": [world.other.id_tokens[0].pk]},
        format="json",
    )
    assert "id_tokens" in error_details(foreign)
    session = ended_session(world.acme.chargers["ACME-2"], stopped_at=MARCH_9, id_token=tag1)
    cdr_for(session, total_excl_vat=Decimal("8.00"), account_id=account.json()["id"])
    queued = operator.post(
        "/api/v1/invoices/generate/",
        {"account": account.json()["id"], "month": "2024-03"},
        format="json",
    )
    assert queued.status_code == 202
    invoices = wait_for(lambda: all_pages(operator, "/api/v1/invoices/"), what="invoice")
    assert [(i["number"], i["total_incl_vat"]) for i in invoices] == [("INV-000001", "9.68")]
    pdf = operator.get(f"/api/v1/invoices/{invoices[0]['id']}/pdf/")
    assert pdf.status_code == 200
    assert "9.68" in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert (
        world.client(Role.OPERATOR, "other")
        .get(f"/api/v1/invoices/{invoices[0]['id']}/")
        .status_code
        == 404
    )


def test_energy_prices_refuse_overlaps_and_negative_prices(world: World) -> None:
    operator = world.client(Role.OPERATOR)
    depot = world.acme.sites["Depot"]
    base = {"site": depot.pk, "valid_from": "2024-01-01T00:00:00Z", "price_per_kwh": "0.20"}
    assert "price_per_kwh" in error_details(
        operator.post("/api/v1/energy-prices/", {**base, "price_per_kwh": "-0.01"}, format="json")
    )
    overlapping = operator.post(
        "/api/v1/energy-prices/",
        {
            **base,
            "periods": [
                {
                    "weekdays": "01234",
                    "start_time": "17:00",
                    "end_time": "21:00",
                    "price_per_kwh": "0.4",
                },
                {
                    "weekdays": "4",
                    "start_time": "20:00",
                    "end_time": "00:00",
                    "price_per_kwh": "0.1",
                },
            ],
        },
        format="json",
    )
    assert "periods" in error_details(overlapping)
    backwards = operator.post(
        "/api/v1/energy-prices/",
        {
            **base,
            "periods": [
                {
                    "weekdays": "0",
                    "start_time": "21:00",
                    "end_time": "17:00",
                    "price_per_kwh": "0.4",
                }
            ],
        },
        format="json",
    )
    assert "periods" in error_details(backwards)
    assert not EnergyPrice.objects.exists()
    made = operator.post(
        "/api/v1/energy-prices/",
        {
            **base,
            "periods": [
                {
                    "weekdays": "43210",
                    "start_time": "17:00",
                    "end_time": "21:00",
                    "price_per_kwh": "0.4",
                },
                {
                    "weekdays": "56",
                    "start_time": "17:00",
                    "end_time": "00:00",
                    "price_per_kwh": "0.1",
                },
            ],
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["periods"][0]["weekdays"] == "01234"
    assert (
        world.client(Role.SITE_HOST)
        .post(
            "/api/v1/energy-prices/", {**base, "valid_from": "2025-01-01T00:00:00Z"}, format="json"
        )
        .status_code
        == 403
    )


def test_cost_display_rules(world: World) -> None:
    operator = world.client(Role.OPERATOR)
    assert "model" in error_details(
        operator.post("/api/v1/cost-display-rules/", {"enabled": True}, format="json")
    )
    assert "charger" in error_details(
        operator.post("/api/v1/cost-display-rules/", {"charger": "OTHER-1"}, format="json")
    )
    both = operator.post(
        "/api/v1/cost-display-rules/", {"charger": "ACME-1", "model": "X"}, format="json"
    )
    assert "charger" in error_details(both)
    ok = operator.post("/api/v1/cost-display-rules/", {"charger": "ACME-1"}, format="json")
    assert ok.status_code == 201, ok.content
    assert "charger" in error_details(
        operator.post("/api/v1/cost-display-rules/", {"charger": "ACME-1"}, format="json")
    )
    by_model = operator.post(
        "/api/v1/cost-display-rules/", {"vendor": "Alfen", "model": "Eve"}, format="json"
    )
    assert by_model.status_code == 201
    assert world.client(Role.SITE_HOST).get("/api/v1/cost-display-rules/").status_code == 403


def test_openapi_schema_lists_the_billing_resources(world: World) -> None:
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/v1/cdrs/",
        "/api/v1/cdrs/{id}/correct/",
        "/api/v1/invoices/{id}/pdf/",
        "/api/v1/statements/generate/",
        "/api/v1/disputes/{id}/resolve/",
        "/api/v1/dispute-rate/",
    ):
        assert path in schema["paths"], path
