"""What routing policy is live, read back into the policy file's dataclasses.

``routing_show``, the API and the dashboard print it; a policy change records it before and after.
An operator's view is limited to their organization: its own routes (organization, its sites, its
chargers) and the upstreams those use or it owns.
"""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from .models import LOCAL, Route, RouteLeg, Upstream
from .policy_file import (
    OCPP_VERSIONS,
    LegSpec,
    Policy,
    RouteSpec,
    UpstreamSpec,
    canonical_legs,
)


def routes_in_reach(*, organization_id: int | None) -> QuerySet[Route]:
    """The routes an operator of the organization may see and change; all of them for None."""
    routes = Route.objects.select_related("organization", "site__organization", "charger")
    routes = routes.prefetch_related(
        Prefetch("legs", queryset=RouteLeg.objects.select_related("upstream"))
    )
    if organization_id is not None:
        routes = routes.filter(
            Q(scope=Route.Scope.ORGANIZATION, organization_id=organization_id)
            | Q(scope=Route.Scope.SITE, site__organization_id=organization_id)
            | Q(scope=Route.Scope.CHARGER, charger__organization_id=organization_id)
        )
    return routes.order_by("scope", "pk")


def upstreams_in_reach(*, organization_id: int | None) -> QuerySet[Upstream]:
    """Upstreams a policy may name: shared ones and the organization's own (all for None)."""
    upstreams = Upstream.objects.select_related("organization")
    if organization_id is not None:
        upstreams = upstreams.filter(
            Q(organization__isnull=True) | Q(organization_id=organization_id)
        )
    return upstreams.order_by("name")


def route_spec(route: Route) -> RouteSpec:
    """A stored route as the policy file states it."""
    if route.scope == Route.Scope.CHARGER and route.charger is not None:
        target, organization = route.charger.identity, ""
    elif route.scope == Route.Scope.SITE and route.site is not None:
        target, organization = route.site.name, route.site.organization.slug
    elif route.scope == Route.Scope.ORGANIZATION and route.organization is not None:
        target, organization = route.organization.slug, ""
    else:
        target, organization = "", ""
    return RouteSpec(
        scope=route.scope,
        target=target,
        organization=organization,
        legs=canonical_legs(
            LegSpec(
                upstream=leg.upstream.name,
                role=leg.role,
                identity=leg.identity,
                allowed_actions=tuple(sorted(leg.allowed_actions or ())),
            )
            for leg in route.legs.all()
        ),
        primary_down=route.primary_down,
        grace_seconds=route.primary_grace_seconds,
        protected_keys=tuple(route.protected_keys or ()),
    )


def upstream_spec(upstream: Upstream) -> UpstreamSpec:
    return UpstreamSpec(
        name=upstream.name,
        url=upstream.url,
        ocpp_versions=tuple(upstream.ocpp_versions or OCPP_VERSIONS),
        identity_template=upstream.identity_template,
        credentials=upstream.credentials,
        username=upstream.username,
        password=upstream.password,
        tls_verify=upstream.tls_verify,
        ca_bundle=upstream.ca_bundle,
        organization=upstream.organization.slug if upstream.organization else "",
    )


def live_policy(*, organization_id: int | None = None) -> Policy:
    """The live policy in reach, as a ``Policy`` (passwords included: print with care)."""
    upstreams = [
        upstream_spec(upstream)
        for upstream in upstreams_in_reach(organization_id=organization_id).exclude(name=LOCAL)
    ]
    routes = [route_spec(route) for route in routes_in_reach(organization_id=organization_id)]
    return Policy(upstreams=tuple(upstreams), routes=tuple(routes))


def known_upstreams(*, organization_id: int | None) -> dict[str, str]:
    """Names and base URLs of the upstreams a policy of that organization may name."""
    return dict(upstreams_in_reach(organization_id=organization_id).values_list("name", "url"))


def forwarding_upstreams(*, organization_id: int | None) -> list[str]:
    return list(
        upstreams_in_reach(organization_id=organization_id)
        .filter(credentials=Upstream.Credentials.FORWARD)
        .values_list("name", flat=True)
    )
