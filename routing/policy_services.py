"""Applying a routing policy: check it against the database, then change everything at once.

``policy_plan`` validates what the file names (organizations, sites, chargers, upstreams, the
applier's reach) and says what would change, including the cut-overs (a route whose primary
changes) that the dashboard and the API confirm first. ``policy_apply`` writes the plan in one
transaction, records who changed what, and after the commit tells the gateways holding the
affected chargers to re-dial their legs (``routing.redial.routing_changed``); new connections
resolve the new routes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction

from chargers.models import Charger, Site
from cpms.models import Organization

from . import policy_selectors
from .models import LOCAL, Route, RouteLeg, RoutingChange, Upstream
from .policy_file import (
    Policy,
    PolicyError,
    PolicyInvalid,
    RouteSpec,
    UpstreamSpec,
    policy_parse,
    route_document,
)
from .redial import routing_changed


@dataclass(frozen=True, slots=True)
class RouteChange:
    """One route the policy touches: as it is (None: absent) and as it will be (None: removed)."""

    key: tuple[str, str, str]
    description: str
    before: RouteSpec | None
    after: RouteSpec | None

    @property
    def primary_before(self) -> str:
        # A scope without a route of its own falls through to ``local`` or a broader route;
        # either way a new route that names a remote primary moves control.
        return self.before.primary if self.before else LOCAL

    @property
    def primary_after(self) -> str:
        return self.after.primary if self.after else LOCAL

    @property
    def is_cutover(self) -> bool:
        return self.primary_before != self.primary_after

    def summary(self) -> str:
        if self.after is None:
            return f"{self.description}: removed"
        observers = ", ".join(self.after.observers) or "none"
        text = f"{self.description}: primary {self.primary_after}, observers {observers}"
        if self.is_cutover:
            text += f" (cut-over from {self.primary_before})"
        return text


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    policy: Policy
    organization_id: int | None
    changes: tuple[RouteChange, ...]
    upstreams_before: tuple[UpstreamSpec, ...]
    upstreams_after: tuple[UpstreamSpec, ...]

    @property
    def cutovers(self) -> tuple[RouteChange, ...]:
        return tuple(change for change in self.changes if change.is_cutover)

    @property
    def is_empty(self) -> bool:
        return not self.changes and self.upstreams_before == self.upstreams_after

    def summary(self) -> str:
        lines = [change.summary() for change in self.changes if change.before != change.after]
        for spec in self.upstreams_after:
            before = next((u for u in self.upstreams_before if u.name == spec.name), None)
            if before is None:
                lines.append(f"upstream {spec.name}: added ({spec.url})")
            elif before != spec:
                lines.append(f"upstream {spec.name}: changed ({spec.url})")
        return "; ".join(lines) or "no change"


def policy_from_data(data: Any, *, organization_id: int | None) -> Policy:
    """Parse a decoded policy file against the upstreams in the applier's reach."""
    return policy_parse(
        data,
        known_upstreams=policy_selectors.known_upstreams(organization_id=organization_id),
        forwarding_upstreams=policy_selectors.forwarding_upstreams(organization_id=organization_id),
    )


def policy_plan(*, policy: Policy, organization_id: int | None) -> PolicyPlan:
    """What applying ``policy`` would change; raises ``PolicyInvalid`` naming every reference
    that does not exist or lies outside the applier's organization (None: the whole system)."""
    errors: list[PolicyError] = []
    organization_slug = (
        Organization.objects.filter(pk=organization_id).values_list("slug", flat=True).first()
        if organization_id is not None
        else None
    )
    in_reach = {
        upstream.name: upstream
        for upstream in policy_selectors.upstreams_in_reach(organization_id=organization_id)
    }
    taken_elsewhere = set(
        Upstream.objects.exclude(pk__in=[u.pk for u in in_reach.values()]).values_list(
            "name", flat=True
        )
    )
    upstreams_after: list[UpstreamSpec] = []
    for spec in policy.upstreams:
        path = f"upstreams.{spec.name}"
        existing = in_reach.get(spec.name)
        if spec.name in taken_elsewhere:
            errors.append(PolicyError(path, f"the name {spec.name!r} is taken by another upstream"))
            continue
        if organization_id is not None:
            if spec.organization and spec.organization != organization_slug:
                errors.append(PolicyError(f"{path}.organization", "must be your organization"))
            if existing is not None and existing.organization_id is None and not spec.implicit:
                errors.append(PolicyError(path, "a shared upstream is changed by an administrator"))
        elif spec.organization and not Organization.objects.filter(slug=spec.organization).exists():
            errors.append(
                PolicyError(f"{path}.organization", f"no organization {spec.organization!r}")
            )
        if existing is not None and spec.implicit:
            continue
        if existing is not None and not spec.password:
            spec = replace(spec, password=existing.password)
        if organization_id is not None and not spec.organization and organization_slug:
            spec = replace(spec, organization=organization_slug)
        spec = replace(spec, implicit=False)
        if existing is None or policy_selectors.upstream_spec(existing) != spec:
            upstreams_after.append(spec)

    for i, route in enumerate(policy.routes):
        path = f"routes[{i}]"
        if route.scope == Route.Scope.GLOBAL and organization_id is not None:
            errors.append(PolicyError(path, "the global route is set by an administrator"))
        elif route.scope == Route.Scope.ORGANIZATION:
            if organization_id is not None and route.target != organization_slug:
                errors.append(PolicyError(f"{path}.organization", "must be your organization"))
            elif not Organization.objects.filter(slug=route.target).exists():
                errors.append(
                    PolicyError(f"{path}.organization", f"no organization {route.target!r}")
                )
        elif route.scope == Route.Scope.SITE:
            sites = Site.objects.filter(organization__slug=route.organization, name=route.target)
            if organization_id is not None:
                sites = sites.filter(organization_id=organization_id)
            if not sites.exists():
                errors.append(
                    PolicyError(
                        f"{path}.site", f"no site {route.target!r} in {route.organization!r}"
                    )
                )
        elif route.scope == Route.Scope.CHARGER:
            chargers = Charger.objects.filter(identity=route.target)
            if organization_id is not None:
                chargers = chargers.filter(organization_id=organization_id)
            if not chargers.exists():
                errors.append(PolicyError(f"{path}.charger_id", f"no charger {route.target!r}"))
    if errors:
        raise PolicyInvalid(errors)

    current = {
        spec.key: spec
        for spec in (
            policy_selectors.route_spec(route)
            for route in policy_selectors.routes_in_reach(organization_id=organization_id)
        )
    }
    changes = [
        RouteChange(
            key=route.key,
            description=route.describe(),
            before=current.get(route.key),
            after=route,
        )
        for route in policy.routes
        if current.get(route.key) != route
    ]
    if policy.replace:
        named = {route.key for route in policy.routes}
        changes += [
            RouteChange(key=key, description=spec.describe(), before=spec, after=None)
            for key, spec in current.items()
            if key not in named
        ]
    upstreams_before = tuple(
        policy_selectors.upstream_spec(in_reach[spec.name])
        for spec in upstreams_after
        if spec.name in in_reach
    )
    return PolicyPlan(
        policy=policy,
        organization_id=organization_id,
        changes=tuple(changes),
        upstreams_before=upstreams_before,
        upstreams_after=tuple(upstreams_after),
    )


def _upstream_document(spec: UpstreamSpec) -> dict[str, Any]:
    # Passwords never go into the change record.
    return {
        "url": spec.url,
        "ocpp_versions": list(spec.ocpp_versions),
        "identity": spec.identity_template,
        "credentials": spec.credentials,
        "tls_verify": spec.tls_verify,
        "organization": spec.organization,
    }


def _upstream_write(spec: UpstreamSpec) -> Upstream:
    organization = Organization.objects.get(slug=spec.organization) if spec.organization else None
    upstream, _ = Upstream.objects.update_or_create(
        name=spec.name,
        defaults={
            "url": spec.url,
            "organization": organization,
            "ocpp_versions": list(spec.ocpp_versions),
            "identity_template": spec.identity_template,
            "credentials": spec.credentials,
            "username": spec.username,
            "password": spec.password,
            "tls_verify": spec.tls_verify,
            "ca_bundle": spec.ca_bundle,
        },
    )
    return upstream


def _route_target(spec: RouteSpec) -> dict[str, Any]:
    if spec.scope == Route.Scope.CHARGER:
        return {"charger": Charger.objects.get(identity=spec.target)}
    if spec.scope == Route.Scope.SITE:
        return {"site": Site.objects.get(organization__slug=spec.organization, name=spec.target)}
    if spec.scope == Route.Scope.ORGANIZATION:
        return {"organization": Organization.objects.get(slug=spec.target)}
    return {}


def _route_write(spec: RouteSpec) -> Route:
    target = _route_target(spec)
    route = Route.objects.filter(scope=spec.scope, **target).first()
    knobs = {
        "primary_down": spec.primary_down,
        "primary_grace_seconds": spec.grace_seconds,
        "protected_keys": list(spec.protected_keys),
    }
    if route is None:
        route = Route.objects.create(scope=spec.scope, **target, **knobs)
    else:
        for name, value in knobs.items():
            setattr(route, name, value)
        route.save(update_fields=[*knobs, "updated_at"])
        route.legs.all().delete()
    names = [leg.upstream for leg in spec.legs]
    if LOCAL in names:
        # Created by a migration; kept there, whatever emptied the table since.
        Upstream.objects.get_or_create(name=LOCAL, defaults={"url": ""})
    upstreams = {u.name: u for u in Upstream.objects.filter(name__in=names)}
    RouteLeg.objects.bulk_create(
        RouteLeg(
            route=route,
            upstream=upstreams[leg.upstream],
            role=leg.role,
            identity=leg.identity,
            allowed_actions=list(leg.allowed_actions),
        )
        for leg in spec.legs
    )
    return route


def _route_delete(spec: RouteSpec) -> None:
    Route.objects.filter(scope=spec.scope, **_route_target(spec)).delete()


def _affected_chargers(plan: PolicyPlan) -> list[str] | None:
    """The identities whose routes may have changed; None when that may be any charger."""
    if plan.upstreams_after:
        return None
    identities: set[str] = set()
    for change in plan.changes:
        spec = change.after or change.before
        assert spec is not None
        if spec.scope == Route.Scope.GLOBAL:
            return None
        if spec.scope == Route.Scope.CHARGER:
            identities.add(spec.target)
        elif spec.scope == Route.Scope.SITE:
            identities.update(
                Charger.objects.filter(
                    site__organization__slug=spec.organization, site__name=spec.target
                ).values_list("identity", flat=True)
            )
        else:
            identities.update(
                Charger.objects.filter(organization__slug=spec.target).values_list(
                    "identity", flat=True
                )
            )
    return sorted(identities)


def _organization_of(spec: RouteSpec) -> int | None:
    if spec.scope == Route.Scope.CHARGER:
        return (
            Charger.objects.filter(identity=spec.target)
            .values_list("organization_id", flat=True)
            .first()
        )
    slug = spec.organization if spec.scope == Route.Scope.SITE else spec.target
    if spec.scope == Route.Scope.GLOBAL or not slug:
        return None
    return Organization.objects.filter(slug=slug).values_list("pk", flat=True).first()


def policy_apply(
    *,
    plan: PolicyPlan,
    source: str,
    changed_by: Any = None,
    actor: str = "",
) -> tuple[RoutingChange, ...]:
    """Write the plan in one transaction and record it: one record per organization whose routes
    it changes (and one without an organization for the global route and shared upstreams). An
    empty tuple when the policy is live already.

    The plan is checked again inside the transaction, so a policy that became invalid since it was
    planned (a charger deleted meanwhile) changes nothing."""
    if plan.is_empty:
        return ()
    user = changed_by if getattr(changed_by, "pk", None) else None
    if not actor and user is not None:
        actor = user.get_username()
    with transaction.atomic():
        fresh = policy_plan(policy=plan.policy, organization_id=plan.organization_id)
        if fresh.is_empty:
            return ()
        groups: dict[int | None, list[RouteChange]] = {}
        upstream_groups: dict[int | None, list[UpstreamSpec]] = {}
        for change in fresh.changes:
            spec = change.after or change.before
            assert spec is not None
            groups.setdefault(_organization_of(spec), []).append(change)
        slugs = dict(Organization.objects.values_list("slug", "pk"))
        for upstream in fresh.upstreams_after:
            upstream_groups.setdefault(slugs.get(upstream.organization), []).append(upstream)
        for upstream in fresh.upstreams_after:
            _upstream_write(upstream)
        for change in fresh.changes:
            if change.after is None:
                assert change.before is not None
                _route_delete(change.before)
            else:
                _route_write(change.after)
        records = []
        for organization_id in sorted(
            set(groups) | set(upstream_groups), key=lambda pk: (pk is None, pk or 0)
        ):
            changes = groups.get(organization_id, [])
            upstreams = upstream_groups.get(organization_id, [])
            names = {u.name for u in upstreams}
            part = PolicyPlan(
                policy=fresh.policy,
                organization_id=organization_id,
                changes=tuple(changes),
                upstreams_before=tuple(u for u in fresh.upstreams_before if u.name in names),
                upstreams_after=tuple(upstreams),
            )
            records.append(
                RoutingChange.objects.create(
                    changed_by=user,
                    actor=actor[:200],
                    source=source,
                    organization_id=organization_id,
                    summary=part.summary()[:500],
                    before={
                        "routes": [route_document(c.before) for c in changes if c.before],
                        "upstreams": {u.name: _upstream_document(u) for u in part.upstreams_before},
                    },
                    after={
                        "routes": [route_document(c.after) for c in changes if c.after],
                        "removed": [
                            route_document(c.before)
                            for c in changes
                            if c.after is None and c.before
                        ],
                        "upstreams": {u.name: _upstream_document(u) for u in upstreams},
                    },
                )
            )
        routing_changed(charger_identities=_affected_chargers(fresh))
    return tuple(records)
