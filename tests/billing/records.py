"""Sessions and CDRs written directly, for tests of what is built on CDRs (invoices,
statements, disputes) without pricing a session."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing.models import Cdr, CdrLine
from chargers.models import Charger, IdToken, Session, SessionState

_numbers = itertools.count(1)


def ended_session(
    charger: Charger,
    *,
    stopped_at: datetime,
    energy_wh: Decimal = Decimal("10000"),
    id_token: IdToken | None = None,
) -> Session:
    n = next(_numbers)
    return Session.objects.create(
        charger=charger,
        connector_number=1,
        id_token=id_token,
        id_tag=id_token.token if id_token else "",
        transaction_id=str(n),
        start_key=f"start-{n}",
        state=SessionState.COMPLETED,
        started_at=stopped_at - timedelta(hours=1),
        stopped_at=stopped_at,
        meter_start_wh=Decimal(0),
        meter_stop_wh=energy_wh,
        energy_wh=energy_wh,
    )


def cdr_for(
    session: Session,
    *,
    total_excl_vat: Decimal,
    vat_rate: Decimal = Decimal(21),
    account_id: int | None = None,
) -> Cdr:
    """A CDR of one energy line: VAT rounded half up to cents."""
    vat = (total_excl_vat * vat_rate / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    charger = session.charger
    cdr = Cdr.objects.create(
        organization_id=charger.organization_id,
        session=session,
        charger=charger,
        site=charger.site,
        account_id=account_id,
        id_tag=session.id_tag,
        currency="EUR",
        started_at=session.started_at,
        stopped_at=session.stopped_at,
        energy_wh=session.energy_wh,
        charging_seconds=3600,
        parking_seconds=0,
        total_excl_vat=total_excl_vat,
        total_vat=vat,
        total_incl_vat=total_excl_vat + vat,
    )
    CdrLine.objects.create(
        cdr=cdr,
        position=1,
        component="ENERGY",
        description="Energy",
        quantity=session.energy_wh / 1000,
        unit="kWh",
        unit_price=(total_excl_vat * 1000 / session.energy_wh).quantize(Decimal("0.00001")),
        vat_rate=vat_rate,
        amount_excl_vat=total_excl_vat,
        vat=vat,
        amount_incl_vat=total_excl_vat + vat,
    )
    return cdr
