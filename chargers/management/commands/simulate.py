"""A fleet of simulated OCPP 1.6J, 2.0.1 or 2.1 chargers (or a mix) over real WebSockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.simulator import PROTOCOLS, FleetConfig, run_fleet


class Command(BaseCommand):
    help = (
        "Run N simulated OCPP chargers (1.6J, 2.0.1, 2.1, or 'mixed' 1.6 and 2.0.1) against a "
        "central system: boot, heartbeats, status changes, authorize, sessions and meter values "
        "at configurable rates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="ws://127.0.0.1:8000/ocpp/",
            help="OCPP base URL; the charger id is appended",
        )
        parser.add_argument("--count", type=int, default=5)
        parser.add_argument(
            "--prefix", default="DEMO-", help="charger ids are PREFIX + 3-digit index"
        )
        parser.add_argument("--start", type=int, default=1, help="first index")
        parser.add_argument(
            "--password", default="demo-charger-secret", help="Basic auth password ('' for none)"
        )
        parser.add_argument(
            "--protocol",
            default="ocpp1.6",
            choices=list(PROTOCOLS),
            help="subprotocol the chargers speak; 'mixed' alternates 1.6 and 2.0.1",
        )
        parser.add_argument("--connectors", type=int, default=2)
        parser.add_argument(
            "--heartbeat", type=float, default=None, help="seconds; default: what the server says"
        )
        parser.add_argument(
            "--meter-interval", type=float, default=15.0, help="seconds between MeterValues"
        )
        parser.add_argument("--sessions-per-hour", type=float, default=6.0, help="per connector")
        parser.add_argument(
            "--session-minutes", type=float, default=10.0, help="mean session length"
        )
        parser.add_argument("--power-kw", type=float, default=11.0)
        parser.add_argument(
            "--id-tag", action="append", dest="id_tags", help="id tags to use (repeatable)"
        )
        parser.add_argument(
            "--ramp", type=float, default=2.0, help="spread connects over this many seconds"
        )
        parser.add_argument(
            "--duration", type=float, default=0.0, help="seconds to run; 0 runs until stopped"
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["count"] < 1 or options["connectors"] < 1:
            raise CommandError("--count and --connectors must be at least 1")
        if options["meter_interval"] <= 0:
            raise CommandError("--meter-interval must be positive")
        logging.basicConfig(level=logging.WARNING)
        config = FleetConfig(
            url=options["url"] if options["url"].endswith("/") else options["url"] + "/",
            count=options["count"],
            prefix=options["prefix"],
            start_index=options["start"],
            password=options["password"] or None,
            connectors=options["connectors"],
            heartbeat_interval=options["heartbeat"],
            meter_interval=options["meter_interval"],
            sessions_per_hour=options["sessions_per_hour"],
            session_minutes=options["session_minutes"],
            power_kw=options["power_kw"],
            id_tags=options["id_tags"] or ["DEMO-TAG-1", "DEMO-TAG-2", "DEMO-TAG-3"],
            ramp_seconds=options["ramp"],
            seed=options["seed"],
            protocol=options["protocol"],
        )
        self.stdout.write(f"simulating {config.count} chargers against {config.url}")
        try:
            stats = asyncio.run(run_fleet(config, options["duration"] or None))
        except KeyboardInterrupt:
            return
        self.stdout.write(stats.summary())
