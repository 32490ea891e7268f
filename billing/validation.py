"""Checks at the edge for tariffs, shared by the REST API and the dashboard: each returns the
problems by field, in words a site host understands, and changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chargers.models import Charger, Connector, Site
from cpms.tenancy import Tenant

from .models import PriceGroup, Tariff
from .pricing import TariffElement, TariffError, tariff_elements_parse
from .selectors import site_currency

Errors = dict[str, list[str]]
# The longest idle time a grace period may cover: a day.
MAX_GRACE_SECONDS = 86400


def site_editable(*, tenant: Tenant, site: Site | None) -> bool:
    """Operators edit tariffs of every site of their organization; site hosts only their own."""
    if site is not None and site.organization_id != tenant.organization_id:
        return False
    if tenant.is_operator:
        return True
    return (
        tenant.is_site_host
        and site is not None
        and tenant.site_ids is not None
        and site.pk in tenant.site_ids
    )


def tariff_editable(*, tenant: Tenant, tariff: Tariff) -> bool:
    if tariff.organization_id != tenant.organization_id:
        return False
    return site_editable(tenant=tenant, site=tariff.site)


def draft_errors(
    *,
    elements: Any,
    min_price: Decimal | None,
    max_price: Decimal | None,
    parking_grace_seconds: int,
) -> tuple[tuple[TariffElement, ...] | None, Errors]:
    """The parsed elements (None when they are invalid) and every problem of a draft."""
    errors: Errors = {}
    parsed: tuple[TariffElement, ...] | None = None
    try:
        parsed = tariff_elements_parse(elements)
    except TariffError as error:
        errors.update(error.errors)
    for name, value in (("min_price", min_price), ("max_price", max_price)):
        if value is not None and value < 0:
            errors.setdefault(name, []).append("A price cannot be negative.")
    if min_price is not None and max_price is not None and 0 <= max_price < min_price:
        errors.setdefault("max_price", []).append("The maximum price is below the minimum price.")
    if parking_grace_seconds < 0 or parking_grace_seconds > MAX_GRACE_SECONDS:
        errors.setdefault("parking_grace_seconds", []).append(
            f"From 0 to {MAX_GRACE_SECONDS} seconds."
        )
    return parsed, errors


def currency_errors(*, currency: str, site: Site | None) -> list[str]:
    if site is None:
        return []
    expected = site_currency(site=site)
    if currency.upper() != expected:
        return [f"The site {site.name} is billed in {expected}; a tariff for it must be too."]
    return []


def tariff_create_errors(*, tenant: Tenant, site: Site | None, currency: str) -> Errors:
    errors: Errors = {}
    if site is None and not tenant.is_operator:
        errors["site"] = ["Site hosts create tariffs for one of their sites: choose it."]
    elif not site_editable(tenant=tenant, site=site):
        errors["site"] = ["You may set tariffs for your own sites only."]
    problems = currency_errors(currency=currency, site=site)
    if problems:
        errors["currency"] = problems
    return errors


def assignment_errors(
    *,
    tenant: Tenant,
    tariff: Tariff,
    site: Site | None,
    charger: Charger | None,
    connector: Connector | None,
    price_group: PriceGroup | None,
) -> Errors:
    """An assignment must name one place the caller may edit, inside the tariff's own site when it
    has one, billed in the tariff's currency."""
    errors: Errors = {}
    targets = [t for t in (site, charger, connector) if t is not None]
    if len(targets) != 1:
        errors["non_field_errors"] = ["Give exactly one of site, charger and connector."]
        return errors
    target_site = site or (charger.site if charger else None)
    if connector is not None:
        target_site = connector.charger.site
    organization_id = (
        site.organization_id
        if site
        else (charger.organization_id if charger else connector.charger.organization_id)  # type: ignore[union-attr]
    )
    field = "site" if site else ("charger" if charger else "connector")
    if organization_id != tenant.organization_id:
        errors[field] = ["Not found."]
        return errors
    if not tariff_editable(tenant=tenant, tariff=tariff):
        errors["tariff"] = ["You may assign tariffs of your own sites only."]
    if not site_editable(tenant=tenant, site=target_site) and not (
        tenant.is_operator and target_site is None
    ):
        errors[field] = ["You may assign tariffs to your own sites only."]
    if tariff.site_id is not None and (target_site is None or target_site.pk != tariff.site_id):
        errors.setdefault(field, []).append(
            f"This tariff belongs to the site {tariff.site}: assign it there only."
        )
    expected = site_currency(site=target_site)
    if tariff.currency != expected:
        errors.setdefault(field, []).append(
            f"Billed in {expected}, and this tariff is in {tariff.currency}."
        )
    if price_group is not None and price_group.organization_id != tenant.organization_id:
        errors["price_group"] = ["Not found."]
    return errors
