"""Writes for tariffs: create, edit drafts, publish versions, assign; price groups; a site's
currency. Callers validate at the edge (``billing.validation``); these keep the invariants that
need the database (one draft per tariff, numbering, a published version never changes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chargers.models import Charger, Connector, IdToken, Site
from cpms.models import Organization

from .models import (
    PriceGroup,
    SiteBilling,
    Tariff,
    TariffAssignment,
    TariffVersion,
    TariffVersionState,
)

# How far back a publish may say it takes effect, for clocks of browsers and clients a little behind.
PUBLISH_SLACK = timedelta(seconds=60)
DRAFT_FIELDS = ("elements", "min_price", "max_price", "parking_grace_seconds", "description")


def site_billing_set(*, site: Site, currency: str) -> SiteBilling:
    billing, _ = SiteBilling.objects.update_or_create(
        site=site, defaults={"currency": currency.upper()}
    )
    return billing


def price_group_create(
    *,
    organization: Organization,
    name: str,
    description: str = "",
    group_token: str = "",
    id_tokens: Iterable[IdToken] = (),
) -> PriceGroup:
    with transaction.atomic():
        group = PriceGroup.objects.create(
            organization=organization,
            name=name,
            description=description,
            group_token=group_token,
        )
        group.id_tokens.set(list(id_tokens))
    return group


def price_group_update(*, group: PriceGroup, data: dict[str, Any]) -> PriceGroup:
    with transaction.atomic():
        tokens = data.pop("id_tokens", None)
        for key, value in data.items():
            setattr(group, key, value)
        group.save()
        if tokens is not None:
            group.id_tokens.set(list(tokens))
    return group


def tariff_create(
    *,
    organization: Organization,
    name: str,
    currency: str,
    site: Site | None = None,
    elements: list[dict[str, Any]],
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    parking_grace_seconds: int = 0,
    description: str = "",
    user: User | None = None,
) -> Tariff:
    """A tariff with its first version as a draft; nothing is priced with it until published."""
    with transaction.atomic():
        tariff = Tariff.objects.create(
            organization=organization,
            site=site,
            name=name,
            currency=currency.upper(),
            created_by=user,
        )
        TariffVersion.objects.create(
            tariff=tariff,
            number=1,
            elements=elements,
            min_price=min_price,
            max_price=max_price,
            parking_grace_seconds=parking_grace_seconds,
            description=description,
        )
    return tariff


def tariff_update(*, tariff: Tariff, name: str) -> Tariff:
    tariff.name = name
    tariff.save(update_fields=["name"])
    return tariff


def tariff_draft(*, tariff: Tariff) -> TariffVersion:
    """The tariff's draft, started from its latest version when it has none."""
    with transaction.atomic():
        Tariff.objects.select_for_update().filter(pk=tariff.pk).first()
        draft = TariffVersion.objects.filter(tariff=tariff, state=TariffVersionState.DRAFT).first()
        if draft is not None:
            return draft
        latest = TariffVersion.objects.filter(tariff=tariff).order_by("-number").first()
        return TariffVersion.objects.create(
            tariff=tariff,
            number=(latest.number + 1) if latest else 1,
            **{name: getattr(latest, name) for name in DRAFT_FIELDS} if latest else {},
        )


def tariff_draft_update(*, version: TariffVersion, data: dict[str, Any]) -> TariffVersion:
    """Change a draft. A published version is never changed: edit a new draft and publish it."""
    with transaction.atomic():
        locked = TariffVersion.objects.select_for_update().get(pk=version.pk)
        if locked.state != TariffVersionState.DRAFT:
            raise ValidationError(
                "A published version never changes: edit the tariff's draft and publish it."
            )
        for name in DRAFT_FIELDS:
            if name in data:
                setattr(locked, name, data[name])
        locked.save()
    return locked


def tariff_publish(
    *,
    version: TariffVersion,
    effective_from: datetime | None = None,
    user: User | None = None,
) -> TariffVersion:
    """Publish a draft: from ``effective_from`` (default now) new sessions are priced with it.

    Sessions that started earlier keep the version they started with, so a version cannot take
    effect in the past.
    """
    now = timezone.now()
    effective_from = effective_from or now
    with transaction.atomic():
        locked = TariffVersion.objects.select_for_update().get(pk=version.pk)
        if locked.state != TariffVersionState.DRAFT:
            raise ValidationError("This version is published already.")
        if effective_from < now - PUBLISH_SLACK:
            raise ValidationError(
                {
                    "effective_from": [
                        "A version cannot take effect in the past: sessions that started "
                        "earlier keep the price they started with."
                    ]
                }
            )
        locked.state = TariffVersionState.PUBLISHED
        locked.effective_from = max(effective_from, now)
        locked.published_at = now
        locked.published_by = user
        locked.save()
    return locked


def tariff_assign(
    *,
    tariff: Tariff,
    site: Site | None = None,
    charger: Charger | None = None,
    connector: Connector | None = None,
    price_group: PriceGroup | None = None,
    valid_from: datetime | None = None,
    user: User | None = None,
) -> TariffAssignment:
    """Assign a tariff to one site, charger or connector, for a price group or the public.

    The assignment it replaces (same place, same group) ends when this one begins.
    """
    if sum(target is not None for target in (site, charger, connector)) != 1:
        raise ValidationError("Assign a tariff to exactly one site, charger or connector.")
    valid_from = valid_from or timezone.now()
    with transaction.atomic():
        current = TariffAssignment.objects.select_for_update().filter(
            site=site,
            charger=charger,
            connector=connector,
            price_group=price_group,
            valid_until__isnull=True,
        )
        for old in current:
            if old.valid_from >= valid_from:
                # Never in force: it is simply replaced.
                old.valid_until = old.valid_from
            else:
                old.valid_until = valid_from
            old.save(update_fields=["valid_until"])
        return TariffAssignment.objects.create(
            organization=tariff.organization,
            tariff=tariff,
            site=site,
            charger=charger,
            connector=connector,
            price_group=price_group,
            valid_from=valid_from,
            created_by=user,
        )


def tariff_assignment_end(
    *, assignment: TariffAssignment, at: datetime | None = None
) -> TariffAssignment:
    """End an assignment; it stays on record for the sessions it priced."""
    at = at or timezone.now()
    if assignment.valid_until is None or assignment.valid_until > at:
        assignment.valid_until = max(at, assignment.valid_from)
        assignment.save(update_fields=["valid_until"])
    return assignment
