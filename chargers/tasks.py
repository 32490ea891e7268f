"""Celery tasks of the chargers app: thin, ids in, a service does the work."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="chargers.expire_stale_connections", ignore_result=True)
def expire_stale_connections() -> int:
    from .services import chargers_expire_stale

    return chargers_expire_stale()
