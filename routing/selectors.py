"""Which upstreams a charger's stream goes to: the route that applies, resolved once per dial."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from django.db import connection
from django.db.models import Prefetch, Q

from chargers.models import Charger

from .models import LOCAL, Route, RouteLeg, Upstream, UpstreamCredential


@dataclass(frozen=True, slots=True)
class ResolvedLeg:
    """One upstream of a charger's route, with everything needed to dial it."""

    upstream: str
    role: str
    # The charger's name at that upstream and the full URL to dial ("" for local).
    identity: str
    url: str
    ocpp_versions: tuple[str, ...] = ()
    credentials: str = Upstream.Credentials.NONE
    username: str = ""
    password: str = field(default="", repr=False)
    tls_verify: bool = True
    ca_bundle: str = field(default="", repr=False)
    allowed_actions: frozenset[str] = frozenset()
    upstream_pk: int | None = None

    @property
    def is_local(self) -> bool:
        return self.upstream == LOCAL

    @property
    def is_primary(self) -> bool:
        return self.role == RouteLeg.Role.PRIMARY

    @property
    def forwards_charger_password(self) -> bool:
        return self.credentials == Upstream.Credentials.FORWARD and self.is_primary

    def accepts(self, version: str) -> bool:
        return not self.ocpp_versions or version in self.ocpp_versions


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    primary_down: str = Route.PrimaryDown.CLOSE
    primary_grace_seconds: int = 15
    protected_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """The primary leg, the observer legs and the policy that apply to one charger."""

    primary: ResolvedLeg
    observers: tuple[ResolvedLeg, ...] = ()
    policy: RoutePolicy = RoutePolicy()
    # Which route applied: charger, site, organization, global, or "default" (none did).
    scope: str = "default"

    @property
    def is_local_only(self) -> bool:
        """The plain path: ``local`` answers and nobody observes."""
        return self.primary.is_local and not self.observers

    @property
    def legs(self) -> tuple[ResolvedLeg, ...]:
        return (self.primary, *self.observers)

    @property
    def local_controls(self) -> bool:
        return self.primary.is_local

    def leg(self, upstream: str) -> ResolvedLeg | None:
        return next((leg for leg in self.legs if leg.upstream == upstream), None)


LOCAL_PRIMARY = ResolvedLeg(upstream=LOCAL, role=RouteLeg.Role.PRIMARY, identity="", url="")


DEFAULT_ROUTE = ResolvedRoute(primary=LOCAL_PRIMARY, scope="default")


def upstream_url(base: str, identity: str) -> str:
    """The URL a charger is dialled at: the base URL and the charger's name there."""
    return f"{base.rstrip('/')}/{quote(identity, safe='')}"


def _applicable_route(*, charger_pk: int, organization_pk: int) -> Route | None:
    """The most specific route of a charger, in one query (plus one for its legs)."""
    targets = (
        Q(scope=Route.Scope.CHARGER, charger_id=charger_pk)
        | Q(scope=Route.Scope.SITE, site__chargers__pk=charger_pk)
        | Q(scope=Route.Scope.ORGANIZATION, organization_id=organization_pk)
        | Q(scope=Route.Scope.GLOBAL)
    )
    legs = Prefetch("legs", queryset=RouteLeg.objects.select_related("upstream"))
    routes = {route.scope: route for route in Route.objects.filter(targets).prefetch_related(legs)}
    for scope in Route.Scope.values:
        if scope in routes:
            return routes[scope]
    return None


def _resolve_leg(
    leg: RouteLeg, charger_identity: str, credential: UpstreamCredential | None
) -> ResolvedLeg:
    upstream = leg.upstream
    if upstream.is_local:
        return ResolvedLeg(
            upstream=LOCAL,
            role=leg.role,
            identity=charger_identity,
            url="",
            upstream_pk=upstream.pk,
        )
    identity = leg.identity or upstream.identity_template.replace("{charger_id}", charger_identity)
    mode = upstream.credentials
    username, password = "", ""
    if mode == Upstream.Credentials.BASIC_UPSTREAM:
        username, password = upstream.username or identity, upstream.password
    elif mode == Upstream.Credentials.BASIC_CHARGER:
        if credential is not None:
            username, password = credential.username or identity, credential.password
    elif mode == Upstream.Credentials.FORWARD:
        if leg.role != RouteLeg.Role.PRIMARY:
            # A charger's own password never goes to an observer.
            mode = Upstream.Credentials.NONE
        else:
            username = identity
    return ResolvedLeg(
        upstream=upstream.name,
        role=leg.role,
        identity=identity,
        url=upstream_url(upstream.url, identity),
        ocpp_versions=tuple(upstream.ocpp_versions or ()),
        credentials=mode,
        username=username,
        password=password,
        tls_verify=upstream.tls_verify,
        ca_bundle=upstream.ca_bundle,
        allowed_actions=frozenset(leg.allowed_actions or ())
        if leg.role == RouteLeg.Role.OBSERVER
        else frozenset(),
        upstream_pk=upstream.pk,
    )


def route_for_charger(*, charger: Charger) -> ResolvedRoute:
    """The route of a charger: its own, else its site's, its organization's, the global one;
    with none, ``local`` as the only upstream."""
    return route_for_charger_pk(
        charger_pk=charger.pk, organization_pk=charger.organization_id, identity=charger.identity
    )


def route_for_charger_pk(*, charger_pk: int, organization_pk: int, identity: str) -> ResolvedRoute:
    """``route_for_charger`` from what a handshake knows. A route without a primary keeps
    ``local`` as primary, so a half-written policy never leaves a charger with nobody to answer."""
    route = _applicable_route(charger_pk=charger_pk, organization_pk=organization_pk)
    if route is None:
        return DEFAULT_ROUTE
    legs = list(route.legs.all())
    per_charger = [
        leg.upstream_id
        for leg in legs
        if leg.upstream.credentials == Upstream.Credentials.BASIC_CHARGER
    ]
    credentials = (
        {
            c.upstream_id: c
            for c in UpstreamCredential.objects.filter(
                charger_id=charger_pk, upstream_id__in=per_charger
            )
        }
        if per_charger
        else {}
    )
    resolved = [_resolve_leg(leg, identity, credentials.get(leg.upstream_id)) for leg in legs]
    primary = next((leg for leg in resolved if leg.is_primary), None)
    observers = tuple(
        sorted((leg for leg in resolved if not leg.is_primary), key=lambda leg: leg.upstream)
    )
    if primary is None:
        primary = replace(LOCAL_PRIMARY, identity=identity)
        observers = tuple(leg for leg in observers if not leg.is_local)
    policy = RoutePolicy(
        primary_down=route.primary_down,
        primary_grace_seconds=route.primary_grace_seconds,
        protected_keys=frozenset(route.protected_keys or ()),
    )
    return ResolvedRoute(primary=primary, observers=observers, policy=policy, scope=route.scope)


@functools.cache
def primary_upstream_sql(charger: str) -> str:
    """``route_for_charger`` down to one value, as SQL for a query that reads the charger row
    anyway (aliased ``charger``): a scalar subquery giving the name of the primary upstream of
    the route that applies to it (its own, else its site's, its organization's, the global
    one), NULL when none applies or that route has no primary (``local`` answers then).

    Read in the statement that needs it, it is what the last committed routing change left, by
    whichever process (API, dashboard, admin, Celery, a policy file): nothing to keep in step.
    """
    route, leg, upstream = (
        connection.ops.quote_name(model._meta.db_table) for model in (Route, RouteLeg, Upstream)
    )
    # The most specific first, in Route.Scope's order.
    rank = " ".join(
        f"WHEN '{scope}' THEN {index}" for index, scope in enumerate(Route.Scope.values)
    )
    return (
        f"(SELECT upstream.name FROM {leg} AS leg"
        f" JOIN {upstream} AS upstream ON upstream.id = leg.upstream_id"
        f" WHERE leg.role = '{RouteLeg.Role.PRIMARY.value}' AND leg.route_id = ("
        f"SELECT route.id FROM {route} AS route"
        f" WHERE (route.scope = '{Route.Scope.CHARGER.value}' AND route.charger_id = {charger}.id)"
        f" OR (route.scope = '{Route.Scope.SITE.value}' AND route.site_id = {charger}.site_id)"
        f" OR (route.scope = '{Route.Scope.ORGANIZATION.value}'"
        f" AND route.organization_id = {charger}.organization_id)"
        f" OR route.scope = '{Route.Scope.GLOBAL.value}'"
        f" ORDER BY CASE route.scope {rank} END LIMIT 1))"
    )


def charger_replay_frames(*, identity: str) -> list[str]:
    """The charger's last BootNotification and its latest StatusNotification per connector
    since, as it sent them (from the journal): what a leg dialled mid-connection gets first."""
    from chargers.models import Frame

    received = Frame.objects.filter(
        charger_identity=identity, leg="charger", direction=Frame.Direction.IN, kind=2
    )
    boot = (
        received.filter(action="BootNotification")
        .order_by("-timestamp", "-id")
        .values_list("raw", "timestamp")
        .first()
    )
    if boot is None:
        return []
    statuses = (
        received.filter(action="StatusNotification", timestamp__gte=boot[1])
        .order_by("timestamp", "id")
        .values_list("raw", flat=True)[:200]
    )
    return [boot[0], *statuses]
