"""Template tags of billing: a session's cost breakdown for the session page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone

from billing import pricing_bridge
from billing.models import Cdr
from chargers.models import Session, SessionState

register = template.Library()


@dataclass(frozen=True, slots=True)
class SessionCost:
    """What the session page shows: the CDR once there is one, else the cost so far."""

    cdr: Cdr | None
    lines: tuple[Any, ...]
    currency: str
    total_excl_vat: Decimal
    total_vat: Decimal
    total_incl_vat: Decimal
    as_of: datetime | None  # the moment a running session was priced up to


@register.simple_tag
def session_cost(session: Session) -> SessionCost | None:
    cdr = Cdr.objects.filter(session=session, current=True).prefetch_related("lines").first()
    if cdr is not None:
        return SessionCost(
            cdr=cdr,
            lines=tuple(cdr.lines.all()),
            currency=cdr.currency,
            total_excl_vat=cdr.total_excl_vat,
            total_vat=cdr.total_vat,
            total_incl_vat=cdr.total_incl_vat,
            as_of=None,
        )
    if session.state != SessionState.ACTIVE:
        return None
    now = timezone.now()
    priced = pricing_bridge.session_price(session=session, until=now)
    if priced is None:
        return None
    return SessionCost(
        cdr=None,
        lines=priced.lines,
        currency=priced.currency,
        total_excl_vat=priced.total_excl_vat,
        total_vat=priced.total_vat,
        total_incl_vat=priced.total_incl_vat,
        as_of=now,
    )
