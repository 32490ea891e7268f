"""Reads of alerts, their notifications and their figures (MTTD, MTTR), always per tenant."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, QuerySet

from cpms.tenancy import Tenant

from .alert_rules import DurationStats, duration_stats
from .models import Alert, AlertDelivery, AlertSubscription, WebhookEndpoint


def alerts_for(tenant: Tenant) -> QuerySet[Alert]:
    qs = Alert.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(charger__site_id__in=tenant.site_ids)
    return qs


def webhook_endpoints_for(tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization_id=tenant.organization_id)


def alert_deliveries_for(tenant: Tenant) -> QuerySet[AlertDelivery]:
    return AlertDelivery.objects.filter(organization_id=tenant.organization_id)


def alert_subscription_of(tenant: Tenant) -> AlertSubscription | None:
    if tenant.user_id is None:
        return None
    return AlertSubscription.objects.filter(
        organization_id=tenant.organization_id, user_id=tenant.user_id
    ).first()


@dataclass(frozen=True, slots=True)
class KindStats:
    kind: str
    count: int
    mttd: DurationStats
    mttr: DurationStats


@dataclass(frozen=True, slots=True)
class AlertStats:
    count: int
    open: int
    acknowledged: int
    resolved: int
    suppressed: int
    reopened: int
    mttd: DurationStats  # fault to alert, over every alert with a fault time
    mttr: DurationStats  # alert to resolution, over the resolved ones
    by_kind: list[KindStats]


def alert_stats(alerts: QuerySet[Alert]) -> AlertStats:
    """Counts per state and the MTTD/MTTR distributions of ``alerts``, overall and per kind."""
    states = dict(alerts.values_list("state").annotate(n=Count("id")).order_by())
    rows = list(alerts.values_list("kind", "mttd_seconds", "mttr_seconds", "state"))
    mttd_all = [mttd for _, mttd, _, _ in rows if mttd is not None]
    mttr_all = [
        mttr for _, _, mttr, state in rows if mttr is not None and state == Alert.State.RESOLVED
    ]
    by_kind: list[KindStats] = []
    for kind in sorted({kind for kind, _, _, _ in rows}):
        of_kind = [row for row in rows if row[0] == kind]
        by_kind.append(
            KindStats(
                kind=kind,
                count=len(of_kind),
                mttd=duration_stats([m for _, m, _, _ in of_kind if m is not None]),
                mttr=duration_stats(
                    [r for _, _, r, s in of_kind if r is not None and s == Alert.State.RESOLVED]
                ),
            )
        )
    return AlertStats(
        count=len(rows),
        open=states.get(Alert.State.OPEN, 0),
        acknowledged=states.get(Alert.State.ACKNOWLEDGED, 0),
        resolved=states.get(Alert.State.RESOLVED, 0),
        suppressed=alerts.filter(suppressed=True).count(),
        reopened=alerts.filter(reopen_count__gt=0).count(),
        mttd=duration_stats(mttd_all),
        mttr=duration_stats(mttr_all),
        by_kind=by_kind,
    )
