"""Issue a REST API token: ``create_api_token --org SLUG --name NAME [--role R] [--site S ...]``.

The key is printed once, as the last line of the output, and is never stored in clear.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chargers.models import Site
from cpms.models import Organization, Role
from cpms.services import api_token_create


class Command(BaseCommand):
    help = "Issue an API token for an organization; prints the key (shown only this once) last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", required=True, help="who or what uses the token")
        parser.add_argument("--role", choices=Role.values, default=Role.INTEGRATOR)
        parser.add_argument(
            "--site",
            action="append",
            default=[],
            help="a site (name or id) a site-host token may see; repeat for several",
        )
        parser.add_argument("--expires-in-days", type=int, help="expire the token after N days")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"no organization with slug {options['org']!r}")
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters")
        role = options["role"]
        sites = [self._site(organization, value) for value in options["site"]]
        if role == Role.SITE_HOST and not sites:
            raise CommandError("a site-host token needs at least one --site")
        if role != Role.SITE_HOST and sites:
            raise CommandError("--site applies to site-host tokens only")
        expires_at = None
        if options["expires_in_days"] is not None:
            if options["expires_in_days"] < 1:
                raise CommandError("--expires-in-days must be at least 1")
            expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
        token, key = api_token_create(
            organization=organization, name=name, role=role, sites=sites, expires_at=expires_at
        )
        self.stdout.write(
            f"API token {token.name!r} ({token.get_role_display()}) issued for {organization.slug}. "
            "Send it as 'Authorization: Token <key>'; the key is shown only now:"
        )
        self.stdout.write(key)

    def _site(self, organization: Organization, value: str) -> Site:
        sites = Site.objects.filter(organization=organization)
        site = sites.filter(pk=int(value)).first() if value.isdigit() else None
        site = site or sites.filter(name=value).first()
        if site is None:
            raise CommandError(f"no site {value!r} in {organization.slug}")
        return site
