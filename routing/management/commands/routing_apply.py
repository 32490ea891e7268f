"""Apply a routing policy file: ``routing_apply FILE.json [--dry-run]`` (``-`` reads stdin)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.models import RoutingChange
from routing.policy_file import PolicyInvalid
from routing.policy_services import policy_apply, policy_from_data, policy_plan


class Command(BaseCommand):
    help = (
        "Validate a routing policy file and apply all of it in one transaction; on any error "
        "nothing changes. Live chargers re-dial the legs that changed without being disconnected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the policy as JSON; - reads standard input")
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and show the changes, apply nothing"
        )
        parser.add_argument("--actor", default="", help="who applies it, for the change record")

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["file"]
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(
                f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        try:
            plan = policy_plan(
                policy=policy_from_data(data, organization_id=None), organization_id=None
            )
        except PolicyInvalid as exc:
            raise CommandError(f"{path} is not a valid policy; nothing changed:\n{exc}") from None
        for change in plan.changes:
            self.stdout.write(f"  {change.summary()}")
        if options["dry_run"]:
            self.stdout.write(f"dry run: {plan.summary()}")
            return
        try:
            records = policy_apply(
                plan=plan,
                source=RoutingChange.Source.COMMAND,
                actor=options["actor"] or _os_user(),
            )
        except PolicyInvalid as exc:
            raise CommandError(f"{path} is no longer valid; nothing changed:\n{exc}") from None
        if not records:
            self.stdout.write("the policy is already live: nothing changed")
        else:
            numbers = ", ".join(str(record.pk) for record in records)
            self.stdout.write(self.style.SUCCESS(f"applied (change {numbers}): {plan.summary()}"))


def _os_user() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):
        return "command line"
