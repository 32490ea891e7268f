"""Celery tasks of the chargers app: thin, ids in, a service does the work."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="chargers.expire_stale_connections", ignore_result=True)
def expire_stale_connections() -> int:
    from .services import chargers_expire_stale

    return chargers_expire_stale()


@shared_task(name="chargers.sweep_commands", ignore_result=True)
def sweep_commands() -> dict[str, int]:
    from .command_services import commands_sweep

    result = commands_sweep()
    return {
        "timed_out": result.timed_out,
        "failed": result.failed,
        "queued": result.queued,
        "redelivered": result.redelivered,
    }
