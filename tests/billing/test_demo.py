"""The demo data includes a published tariff on the demo site, once however often it is seeded."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.utils import timezone

from billing.demo import DEMO_TARIFF
from billing.models import Tariff, TariffAssignment
from billing.selectors import tariff_version_for_session
from chargers.models import Charger, Session, Site


def test_seed_demo_prices_the_demo_site_with_one_tariff(db: Any) -> None:
    for _ in range(2):
        call_command("seed_demo", "--chargers", "1", stdout=io.StringIO())
    tariff = Tariff.objects.get(name=DEMO_TARIFF)
    site = Site.objects.get(name="Demo Depot")
    assert tariff.site == site
    assert TariffAssignment.objects.get().site == site
    session = Session.objects.create(
        charger=Charger.objects.get(identity="DEMO-001"),
        transaction_id="1",
        start_key="1",
        started_at=timezone.now() + timedelta(seconds=1),
        meter_start_wh=Decimal(0),
    )
    version = tariff_version_for_session(session=session)
    assert version is not None and version.tariff == tariff and version.number == 1
