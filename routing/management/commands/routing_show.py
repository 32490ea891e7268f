"""Print the routing that is live: ``routing_show [--json] [--chargers] [--org SLUG]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.models import Charger
from cpms.models import Organization
from routing.health import LegHealth, charger_routing, routed_chargers
from routing.models import RoutingChange
from routing.policy_file import policy_document
from routing.policy_selectors import live_policy


class Command(BaseCommand):
    help = (
        "Show the live routing policy (upstreams and routes; passwords left out), the legs of "
        "connected chargers and the last changes. --json prints a file routing_apply accepts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="the policy as a JSON file")
        parser.add_argument(
            "--chargers", action="store_true", help="every charger's legs, not only connected ones"
        )
        parser.add_argument("--org", help="only this organization's routes and chargers")
        parser.add_argument("--changes", type=int, default=5, help="how many changes to list")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = None
        if options["org"]:
            organization_id = (
                Organization.objects.filter(slug=options["org"])
                .values_list("pk", flat=True)
                .first()
            )
            if organization_id is None:
                raise CommandError(f"no organization with slug {options['org']!r}")
        policy = live_policy(organization_id=organization_id)
        document = policy_document(policy)
        if options["json"]:
            self.stdout.write(json.dumps(document, indent=2))
            return
        self.stdout.write("Upstreams:")
        self.stdout.write("  local  (built in)")
        for spec in policy.upstreams:
            owner = f", organization {spec.organization}" if spec.organization else ""
            tls = "" if spec.tls_verify else ", TLS not verified"
            self.stdout.write(
                f"  {spec.name}  {spec.url}  OCPP {'/'.join(spec.ocpp_versions)}, "
                f"credentials {spec.credentials}{tls}{owner}"
            )
        self.stdout.write("Routes:")
        if not policy.routes:
            self.stdout.write("  none: every charger has local as its only upstream")
        for route in sorted(policy.routes, key=_scope_order):
            observers = ", ".join(route.observers) or "none"
            self.stdout.write(
                f"  {route.describe()}: primary {route.primary}, observers {observers}; "
                f"primary down: {route.primary_down} after {route.grace_seconds}s"
            )
        chargers = Charger.objects.all()
        if organization_id is not None:
            chargers = chargers.filter(organization_id=organization_id)
        if not options["chargers"]:
            chargers = chargers.filter(connected=True)
        rows = charger_routing(routed_chargers(chargers))
        self.stdout.write("Chargers:" if options["chargers"] else "Connected chargers:")
        if not rows:
            self.stdout.write("  none")
        for row in rows:
            online = "connected" if row.charger_connected else "offline"
            legs = "; ".join(_leg(leg) for leg in (row.primary, *row.observers))
            self.stdout.write(f"  {row.identity} ({online}, {row.scope} route): {legs}")
        changes = RoutingChange.objects.all()
        if organization_id is not None:
            changes = changes.filter(organization_id=organization_id)
        self.stdout.write("Last changes:")
        for change in changes[: options["changes"]]:
            self.stdout.write(
                f"  {change.at:%Y-%m-%d %H:%M:%S}Z {change.actor or '?'} via {change.source}: "
                f"{change.summary}"
            )


def _scope_order(route: Any) -> int:
    return ["charger", "site", "organization", "global"].index(route.scope)


def _leg(leg: LegHealth) -> str:
    parts = [f"{leg.role} {leg.upstream} {leg.state}"]
    if leg.latency_ms is not None:
        parts.append(f"{leg.latency_ms:.0f} ms")
    if leg.outbox_depth:
        parts.append(f"outbox {leg.outbox_depth}")
    if leg.dropped:
        parts.append(f"dropped {leg.dropped}")
    if leg.reconnects:
        parts.append(f"reconnects {leg.reconnects}")
    return " ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else "")
