"""The full stack's side of the benchmark, run as a subprocess with ``DATABASE_URL`` (and
``REDIS_URL``) set the way the server under test sees them:

    python -m bench.stack features                 what the stack supports (protocols, commands)
    python -m bench.stack prepare --count N        migrate, register the fleet and its id tokens
    python -m bench.stack mark-connected           chargers left flagged connected, as after a crash
    python -m bench.stack commands --rate R ...    create commands through the service layer
    python -m bench.stack route --primary URL ...  route the fleet to upstreams (s7)

Each prints one JSON object on its last line of stdout. The harness process itself never imports
Django, so the load generator carries none of it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from typing import Any

ORGANIZATION_SLUG = "bench"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    import django

    django.setup()


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def features() -> dict[str, Any]:
    from chargers import consumers

    sender = command_sender()
    return {
        "protocols": list(consumers.VERSIONS),
        "command_path": not isinstance(sender, str),
        "command_detail": sender if isinstance(sender, str) else "",
    }


def _hash_password(password: str) -> str:
    """The charger password hash the service layer itself would store."""
    try:
        from chargers.passwords import hash_password
    except ImportError:
        from django.contrib.auth.hashers import make_password

        return make_password(password)
    return hash_password(password)


def prepare(*, count: int, prefix: str, password: str) -> dict[str, Any]:
    """Migrate, then register chargers ``<prefix>000000`` to ``<prefix><count>`` (0 warms the
    server up) and one id token per charger, all in one organization and site."""
    from django.core.management import call_command
    from django.db import transaction

    from chargers.models import Charger, IdToken, RegistrationStatus, Site
    from cpms.models import Organization

    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    migrated = time.perf_counter() - started
    # One hash for the whole fleet (they share a password): hashing it per charger, as
    # charger_create does, would take minutes at machine-secret cost for 10,000 chargers.
    password_hash = _hash_password(password)
    with transaction.atomic():
        organization, _ = Organization.objects.get_or_create(
            slug=ORGANIZATION_SLUG, defaults={"name": "Benchmark fleet"}
        )
        site, _ = Site.objects.get_or_create(organization=organization, name="Bench depot")
        Charger.objects.bulk_create(
            (
                Charger(
                    organization=organization,
                    site=site,
                    identity=f"{prefix}{index:06d}",
                    password_hash=password_hash,
                    registration_status=RegistrationStatus.ACCEPTED,
                )
                for index in range(count + 1)
            ),
            batch_size=2000,
            ignore_conflicts=True,
        )
        IdToken.objects.bulk_create(
            (
                IdToken(organization=organization, token=f"{prefix}TAG-{index:06d}")
                for index in range(count + 1)
            ),
            batch_size=2000,
            ignore_conflicts=True,
        )
    return {
        "chargers": Charger.objects.filter(identity__startswith=prefix).count(),
        "id_tokens": IdToken.objects.filter(token__startswith=f"{prefix}TAG-").count(),
        "migrate_seconds": round(migrated, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }


def mark_connected(*, prefix: str) -> dict[str, Any]:
    """Leave every charger flagged connected to a consumer that no longer exists, as a server that
    died leaves them; each reconnect then also tells that old channel to close."""
    from chargers.models import Charger

    updated = Charger.objects.filter(identity__startswith=prefix).update(
        connected=True, channel_name="specific.gone!bench"
    )
    return {"marked": updated}


# --- Commands --------------------------------------------------------------------------------------

NOT_AVAILABLE = "not available: the command path does not exist yet"


def command_sender() -> Any:
    """The service that creates a command for a charger, or a string saying why there is none."""
    from chargers import models, services

    if not hasattr(models, "Command"):
        return f"{NOT_AVAILABLE} (chargers.models has no Command model)"
    create = getattr(services, "command_create", None)
    if create is None:
        return f"{NOT_AVAILABLE} (chargers.services has no command_create)"
    parameters = inspect.signature(create).parameters
    if not {"charger", "action", "payload"} <= set(parameters):
        return f"not available: command_create{inspect.signature(create)} takes no charger, action and payload"
    return create


def send_commands(
    *, prefix: str, count: int, rate: float, duration: float, protocol: str
) -> dict[str, Any]:
    """Create commands through the service layer at ``rate`` per second for ``duration`` seconds,
    round-robin over chargers 1..count. Each carries ``<n>@<unix time>`` so that the charger that
    answers it can tell how long it took end to end."""
    from bench.dialects import dialect_for
    from chargers.models import Charger

    create = command_sender()
    if isinstance(create, str):
        return {"available": False, "detail": create}
    dialect = dialect_for(protocol)
    chargers = list(
        Charger.objects.filter(identity__startswith=prefix)
        .exclude(identity=f"{prefix}{0:06d}")
        .order_by("identity")[:count]
    )
    sent = errors = 0
    error_samples: list[str] = []
    started = time.monotonic()
    while True:
        due = started + sent / rate
        now = time.monotonic()
        if now - started >= duration:
            break
        if due > now:
            time.sleep(due - now)
        action, payload = dialect.command_call(f"{sent}@{time.time():.6f}")
        try:
            create(charger=chargers[sent % len(chargers)], action=action, payload=payload)
        except Exception as exc:
            errors += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
        sent += 1
    return {
        "available": True,
        "sent": sent,
        "errors": errors,
        "error_samples": error_samples,
        "seconds": round(time.monotonic() - started, 3),
    }


def route(*, primary: str, observer: str) -> dict[str, Any]:
    """Route the benchmark organization's chargers to ``primary`` (and ``observer``, when given)
    with the organization's route; the connections opened afterwards follow it."""
    from cpms.models import Organization
    from routing.models import Route, RouteLeg, Upstream

    organization = Organization.objects.get(slug=ORGANIZATION_SLUG)
    route, _ = Route.objects.get_or_create(scope="organization", organization=organization)
    RouteLeg.objects.filter(route=route).delete()
    legs = [("bench-primary", primary, "primary"), ("bench-observer", observer, "observer")]
    for name, url, role in legs:
        if not url:
            continue
        upstream, _ = Upstream.objects.update_or_create(name=name, defaults={"url": url})
        RouteLeg.objects.create(route=route, upstream=upstream, role=role)
    return {"route": route.pk, "legs": route.legs.count()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stack", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("features")
    prep = commands.add_parser("prepare")
    prep.add_argument("--count", type=int, required=True)
    prep.add_argument("--prefix", default="BENCH-")
    prep.add_argument("--password", required=True)
    marked = commands.add_parser("mark-connected")
    marked.add_argument("--prefix", default="BENCH-")
    send = commands.add_parser("commands")
    send.add_argument("--prefix", default="BENCH-")
    send.add_argument("--count", type=int, required=True)
    send.add_argument("--rate", type=float, required=True)
    send.add_argument("--duration", type=float, required=True)
    send.add_argument("--protocol", default="ocpp1.6")
    routed = commands.add_parser("route")
    routed.add_argument("--primary", required=True)
    routed.add_argument("--observer", default="")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _setup()
    if args.command == "features":
        _emit(features())
    elif args.command == "prepare":
        _emit(prepare(count=args.count, prefix=args.prefix, password=args.password))
    elif args.command == "mark-connected":
        _emit(mark_connected(prefix=args.prefix))
    elif args.command == "route":
        _emit(route(primary=args.primary, observer=args.observer))
    else:
        _emit(
            send_commands(
                prefix=args.prefix,
                count=args.count,
                rate=args.rate,
                duration=args.duration,
                protocol=args.protocol,
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
