"""How each charger is routed and how each of its legs is doing, for the routing page, the API and
``/metrics``.

Routes are resolved for a whole page of chargers from one read of the routes in reach (the most
specific wins: charger, site, organization, global; ``local`` alone without any), and joined with
what the gateways last wrote of each leg (``LegStatus``) and the depth of its outbox. ``local`` is
served in the process that holds the socket: its leg is up exactly when the charger is connected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chargers.models import Charger

from .models import LOCAL, LegStatus, OutboxEntry, Route, RouteLeg

logger = logging.getLogger(__name__)

# Legs shown one by one in /metrics; past this only the per-upstream totals are exported.
METRICS_MAX_LEGS = 2000


@dataclass(frozen=True, slots=True)
class LegHealth:
    upstream: str
    role: str
    connected: bool
    latency_ms: float | None = None
    outbox_depth: int = 0
    dropped: int = 0
    refused: int = 0
    reconnects: int = 0
    last_error: str = ""
    last_problem: str = ""
    since: datetime | None = None
    known: bool = True  # False: no gateway has dialled this leg yet

    @property
    def is_local(self) -> bool:
        return self.upstream == LOCAL

    @property
    def state(self) -> str:
        if self.connected:
            return "backlog" if self.outbox_depth else "up"
        return "down" if self.known else "not dialled"


@dataclass(frozen=True, slots=True)
class ChargerRouting:
    charger_pk: int
    identity: str
    charger_connected: bool
    scope: str  # charger, site, organization, global, or "default" (no route: local alone)
    primary: LegHealth
    observers: tuple[LegHealth, ...]

    @property
    def local_controls(self) -> bool:
        return self.primary.is_local


@dataclass(frozen=True, slots=True)
class _RouteRoles:
    scope: str
    legs: tuple[tuple[str, str], ...]  # (upstream, role), primary first


def _routes_for(chargers: Sequence[Charger]) -> dict[int, _RouteRoles]:
    """The route that applies to each charger, from one query over every candidate route."""
    charger_pks = [c.pk for c in chargers]
    site_pks = {c.site_id for c in chargers if c.site_id}
    organization_pks = {c.organization_id for c in chargers}
    candidates = Route.objects.filter(
        Q(scope=Route.Scope.CHARGER, charger_id__in=charger_pks)
        | Q(scope=Route.Scope.SITE, site_id__in=site_pks)
        | Q(scope=Route.Scope.ORGANIZATION, organization_id__in=organization_pks)
        | Q(scope=Route.Scope.GLOBAL)
    ).prefetch_related("legs__upstream")
    by_target: dict[tuple[str, int | None], _RouteRoles] = {}
    for route in candidates:
        legs = sorted(
            ((leg.upstream.name, leg.role) for leg in route.legs.all()),
            key=lambda pair: (pair[1] != RouteLeg.Role.PRIMARY, pair[0]),
        )
        target = route.charger_id or route.site_id or route.organization_id
        by_target[(route.scope, target)] = _RouteRoles(scope=route.scope, legs=tuple(legs))
    default = _RouteRoles(scope="default", legs=((LOCAL, RouteLeg.Role.PRIMARY),))
    resolved: dict[int, _RouteRoles] = {}
    for charger in chargers:
        for key in (
            (Route.Scope.CHARGER, charger.pk),
            (Route.Scope.SITE, charger.site_id),
            (Route.Scope.ORGANIZATION, charger.organization_id),
            (Route.Scope.GLOBAL, None),
        ):
            found = by_target.get((str(key[0]), key[1]))
            if found is not None and any(role == "primary" for _, role in found.legs):
                resolved[charger.pk] = found
                break
        else:
            resolved[charger.pk] = default
    return resolved


def charger_routing(chargers: Iterable[Charger]) -> list[ChargerRouting]:
    """Route and leg health of each of ``chargers`` (a page of them: a few queries in all)."""
    chargers = list(chargers)
    if not chargers:
        return []
    routes = _routes_for(chargers)
    pks = [c.pk for c in chargers]
    statuses = {
        (s.charger_id, s.upstream.name): s
        for s in LegStatus.objects.filter(charger_id__in=pks).select_related("upstream")
    }
    depths = {
        (row["charger_id"], row["upstream__name"]): row["depth"]
        for row in OutboxEntry.objects.filter(charger_id__in=pks)
        .values("charger_id", "upstream__name")
        .annotate(depth=Count("id"))
    }
    result: list[ChargerRouting] = []
    for charger in chargers:
        route = routes[charger.pk]
        legs = [
            _leg_health(charger, upstream, role, statuses.get((charger.pk, upstream)), depths)
            for upstream, role in route.legs
        ]
        result.append(
            ChargerRouting(
                charger_pk=charger.pk,
                identity=charger.identity,
                charger_connected=charger.connected,
                scope=route.scope,
                primary=legs[0],
                observers=tuple(legs[1:]),
            )
        )
    return result


def _leg_health(
    charger: Charger,
    upstream: str,
    role: str,
    status: LegStatus | None,
    depths: dict[tuple[int, str], int],
) -> LegHealth:
    depth = depths.get((charger.pk, upstream), 0)
    if upstream == LOCAL:
        return LegHealth(
            upstream=upstream,
            role=role,
            connected=charger.connected,
            outbox_depth=depth,
            since=charger.last_seen,
        )
    if status is None:
        return LegHealth(
            upstream=upstream, role=role, connected=False, outbox_depth=depth, known=False
        )
    # A leg is only as up as the charger connection it belongs to.
    connected = status.connected and charger.connected
    return LegHealth(
        upstream=upstream,
        role=role,
        connected=connected,
        latency_ms=status.latency_ms,
        outbox_depth=depth,
        dropped=status.dropped,
        refused=status.refused,
        reconnects=status.reconnects,
        last_error=status.last_error,
        last_problem=status.last_problem,
        since=status.connected_at if connected else status.disconnected_at,
    )


def routed_chargers(queryset: QuerySet[Charger], *, remote_only: bool = False) -> QuerySet[Charger]:
    """``queryset`` ordered for the routing page; with ``remote_only``, only chargers that some
    route in force could send to an upstream other than ``local`` alone."""
    queryset = queryset.order_by("identity")
    if not remote_only:
        return queryset
    if Route.objects.filter(scope=Route.Scope.GLOBAL).exists():
        return queryset
    return queryset.filter(
        Q(routes__isnull=False)
        | Q(site__routes__isnull=False)
        | Q(organization__routes__isnull=False)
    ).distinct()


class LegCollector(Collector):
    """Per-leg and per-upstream routing health in ``/metrics``, read from the database at scrape
    time: the same figures from every gateway process, so take ``max``, not ``sum``, across them."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # The names, without reading the database (registration happens while apps load).
        return _families([], [], [])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            live = LegStatus.objects.filter(charger__connected=True)
            rows = list(
                live.values_list(
                    "charger__identity",
                    "upstream__name",
                    "role",
                    "connected",
                    "latency_ms",
                    "dropped",
                    "reconnects",
                ).order_by("upstream__name", "charger__identity")[: METRICS_MAX_LEGS + 1]
            )
            totals = list(
                live.values_list("upstream__name", "connected").annotate(n=Count("id")).order_by()
            )
            depths = list(
                OutboxEntry.objects.values_list("upstream__name").annotate(n=Count("id")).order_by()
            )
        except Exception:
            # A scrape must not fail because the database does; the gateway's own figures stay.
            logger.exception("routing figures for /metrics could not be read")
            return
        yield from _families(rows, totals, depths)


def _families(
    rows: list[tuple[Any, ...]],
    totals: list[tuple[str, bool, int]],
    depths: list[tuple[str, int]],
) -> Iterator[GaugeMetricFamily]:
    labels = ["charger", "upstream", "role"]
    connected = GaugeMetricFamily(
        "cpms_routing_leg_connected", "1 when the leg to the upstream is connected", labels=labels
    )
    latency = GaugeMetricFamily(
        "cpms_routing_leg_latency_seconds",
        "Time the upstream took to answer the leg's last CALL",
        labels=labels,
    )
    dropped = GaugeMetricFamily(
        "cpms_routing_leg_dropped", "Meter samples dropped at the outbox bound", labels=labels
    )
    reconnects = GaugeMetricFamily(
        "cpms_routing_leg_reconnects", "Times the leg was dialled again", labels=labels
    )
    depth = GaugeMetricFamily(
        "cpms_routing_outbox_depth",
        "Frames waiting for the upstream to answer",
        labels=["upstream"],
    )
    legs = GaugeMetricFamily(
        "cpms_routing_upstream_legs",
        "Legs of connected chargers, by upstream and state",
        labels=["upstream", "state"],
    )
    # Past the bound only the per-upstream figures are exported, keeping the series bounded.
    if len(rows) <= METRICS_MAX_LEGS:
        for identity, upstream, role, is_connected, latency_ms, drops, redials in rows:
            key = [identity, upstream, role]
            connected.add_metric(key, 1.0 if is_connected else 0.0)
            if latency_ms is not None:
                latency.add_metric(key, latency_ms / 1000.0)
            dropped.add_metric(key, float(drops))
            reconnects.add_metric(key, float(redials))
    for upstream, count in sorted(depths):
        depth.add_metric([upstream], float(count))
    for upstream, is_connected, count in sorted(totals):
        legs.add_metric([upstream, "connected" if is_connected else "disconnected"], float(count))
    yield from (connected, latency, dropped, reconnects, depth, legs)


_registered = False


def metrics_register() -> None:
    """Add the routing figures to the process's Prometheus registry (once)."""
    global _registered
    if _registered:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(LegCollector())
    _registered = True
