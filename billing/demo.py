"""The demo site's tariff: time of use with an idle fee, published and assigned, so a fresh
``make run`` prices its simulated sessions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chargers.models import Site

from . import services
from .models import Tariff, TariffAssignment

DEMO_TARIFF = "Demo Depot day and night"
DEMO_ELEMENTS: list[dict[str, Any]] = [
    {
        "price_components": [{"type": "ENERGY", "price": "0.45", "vat": "21"}],
        "restrictions": {"start_time": "17:00", "end_time": "21:00"},
    },
    {
        "price_components": [
            {"type": "ENERGY", "price": "0.32", "vat": "21"},
            {"type": "PARKING_TIME", "price": "6.00", "vat": "21", "step_size": 60},
        ]
    },
]


def demo_tariff_ensure(*, site: Site) -> Tariff:
    """The demo tariff of the site, created, published and assigned the first time only."""
    tariff = Tariff.objects.filter(organization_id=site.organization_id, name=DEMO_TARIFF).first()
    if tariff is not None:
        return tariff
    tariff = services.tariff_create(
        organization=site.organization,
        name=DEMO_TARIFF,
        currency="EUR",
        site=site,
        elements=DEMO_ELEMENTS,
        min_price=Decimal("1.00"),
        parking_grace_seconds=1800,
        description="Peak 17:00-21:00; idle fee after 30 minutes",
    )
    services.tariff_publish(version=tariff.versions.get())
    if not TariffAssignment.objects.filter(site=site, valid_until__isnull=True).exists():
        services.tariff_assign(tariff=tariff, site=site)
    return tariff
