"""Seed the demo: an organization, a site, chargers, id tokens and an admin user. Idempotent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chargers.models import Charger, IdToken, IdTokenStatus, Site
from chargers.passwords import hash_password
from cpms.models import Membership, Organization, Role

DEMO_ORG = "demo"
DEMO_CHARGER_PASSWORD = "demo-charger-secret"
DEMO_ADMIN = "admin"
DEMO_ADMIN_PASSWORD = "cpms-demo-admin"
DEMO_TOKENS = [
    ("DEMO-TAG-1", IdTokenStatus.ACCEPTED, "Alex Driver"),
    ("DEMO-TAG-2", IdTokenStatus.ACCEPTED, "Sam Fleet"),
    ("DEMO-TAG-3", IdTokenStatus.ACCEPTED, "Robin Resident"),
    ("DEMO-BLOCKED", IdTokenStatus.BLOCKED, "Lost card"),
]


class Command(BaseCommand):
    help = "Create the demo organization, site, chargers, id tokens and admin user (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chargers", type=int, default=5, help="number of DEMO-nnn chargers")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            organization, _ = Organization.objects.get_or_create(
                slug=DEMO_ORG, defaults={"name": "Demo Charging Co."}
            )
            site, _ = Site.objects.get_or_create(
                organization=organization,
                name="Demo Depot",
                defaults={
                    "address": "Stationsplein 1",
                    "city": "Amsterdam",
                    "postal_code": "1012 AB",
                    "country": "NL",
                    "latitude": Decimal("52.378900"),
                    "longitude": Decimal("4.900300"),
                    "time_zone": "Europe/Amsterdam",
                },
            )
            password_hash = None
            for index in range(1, options["chargers"] + 1):
                identity = f"DEMO-{index:03d}"
                if not Charger.objects.filter(identity=identity).exists():
                    password_hash = password_hash or hash_password(DEMO_CHARGER_PASSWORD)
                    Charger.objects.create(
                        identity=identity,
                        organization=organization,
                        site=site,
                        password_hash=password_hash,
                    )
            for token, status, owner in DEMO_TOKENS:
                IdToken.objects.get_or_create(
                    organization=organization,
                    token=token,
                    defaults={"status": status, "owner_name": owner},
                )
            User = get_user_model()
            admin = User.objects.filter(username=DEMO_ADMIN).first()
            if admin is None:
                admin = User.objects.create_superuser(
                    DEMO_ADMIN, "admin@example.com", DEMO_ADMIN_PASSWORD
                )
            Membership.objects.get_or_create(
                user=admin, organization=organization, defaults={"role": Role.OPERATOR_ADMIN}
            )
            from billing.demo import demo_tariff_ensure

            demo_tariff_ensure(site=site)
        self.stdout.write(
            f"demo ready: organization {DEMO_ORG}, site {site.name}, "
            f"chargers DEMO-001..DEMO-{options['chargers']:03d} (password {DEMO_CHARGER_PASSWORD}), "
            f"admin login {DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}"
        )
