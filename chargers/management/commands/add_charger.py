"""Register a charger: ``add_charger <id> [--password P] [--org SLUG] [--site NAME]``."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from chargers import services
from chargers.models import Charger, RegistrationStatus, Site
from cpms.models import Organization


def resolve_organization(slug: str | None) -> Organization:
    if slug:
        try:
            return Organization.objects.get(slug=slug)
        except Organization.DoesNotExist:
            raise CommandError(f"no organization with slug {slug!r}") from None
    organization = Organization.objects.order_by("pk").first()
    if organization is None:
        raise CommandError("no organization exists; run seed_demo or create one in the admin")
    return organization


class Command(BaseCommand):
    help = "Register a charger so it can connect to /ocpp/<id> with HTTP Basic auth."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("charger_id")
        parser.add_argument("--password", help="Basic auth password (generated when left out)")
        parser.add_argument("--org", help="organization slug (default: the first organization)")
        parser.add_argument("--site", help="site name in that organization (created if missing)")
        parser.add_argument(
            "--status",
            choices=[choice for choice, _ in RegistrationStatus.choices],
            default=RegistrationStatus.ACCEPTED,
        )

    def handle(self, *args: Any, **options: Any) -> None:
        identity: str = options["charger_id"]
        if not identity or "/" in identity or len(identity) > 48:
            raise CommandError("charger id must be 1 to 48 characters without '/'")
        if Charger.objects.filter(identity=identity).exists():
            raise CommandError(f"charger {identity!r} already exists")
        password = options["password"] or secrets.token_urlsafe(18)
        if not 8 <= len(password) <= 64:
            raise CommandError("password must be 8 to 64 characters")
        organization = resolve_organization(options["org"])
        with transaction.atomic():
            site = None
            if options["site"]:
                site, _ = Site.objects.get_or_create(
                    organization=organization, name=options["site"]
                )
            services.charger_create(
                identity=identity,
                organization=organization,
                password=password,
                site=site,
                registration_status=options["status"],
            )
        self.stdout.write(f"charger {identity} added to {organization.slug}")
        if not options["password"]:
            self.stdout.write(f"password: {password}")
