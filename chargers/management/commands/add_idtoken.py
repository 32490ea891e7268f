"""Register an id token: ``add_idtoken <token> [--status S] [--org SLUG]``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from chargers import services
from chargers.models import IdToken, IdTokenStatus

from .add_charger import resolve_organization


class Command(BaseCommand):
    help = "Register an id token (RFID card, app token) that chargers may authorize."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("token")
        parser.add_argument(
            "--status", choices=[choice for choice, _ in IdTokenStatus.choices], default="Accepted"
        )
        parser.add_argument("--org", help="organization slug (default: the first organization)")
        parser.add_argument("--expires", help="expiry, ISO 8601 with a time zone")
        parser.add_argument("--group", default="", help="parent/group id token")
        parser.add_argument("--owner", default="", help="owner's name")
        parser.add_argument(
            "--local-list",
            action="store_true",
            help="keep the token in the local authorization lists of the organization's chargers",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        token: str = options["token"]
        if not 1 <= len(token) <= 20:
            # 20 is the 1.6 idTag limit; 2.x allows 36, but a token must work on every charger.
            raise CommandError("token must be 1 to 20 characters")
        organization = resolve_organization(options["org"])
        if IdToken.objects.filter(organization=organization, token=token).exists():
            raise CommandError(f"id token {token!r} already exists in {organization.slug}")
        expires_at: datetime | None = None
        if options["expires"]:
            try:
                expires_at = parse_datetime(options["expires"])
            except ValueError:  # well formed, but no such moment (month 13, hour 25, ...)
                raise CommandError(
                    f"--expires {options['expires']!r} is not a valid date and time"
                ) from None
            if expires_at is None or expires_at.tzinfo is None:
                raise CommandError(
                    "--expires must be ISO 8601 with a time zone, e.g. 2027-01-01T00:00:00Z"
                )
        services.id_token_create(
            organization=organization,
            token=token,
            status=options["status"],
            expires_at=expires_at,
            group_token=options["group"],
            owner_name=options["owner"],
            local_list=options["local_list"],
        )
        self.stdout.write(f"id token {token} ({options['status']}) added to {organization.slug}")
