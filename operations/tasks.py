"""Celery tasks of the operations app: thin, ids in, a service does the work."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="operations.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    from .reconciliation import reconciliation_run

    result = reconciliation_run()
    return {"detected": result.detected, "asked": result.asked, "decided": result.decided}


@shared_task(name="operations.reconciliation_answer", ignore_result=True)
def reconciliation_answer(command_pk: int) -> str:
    from .reconciliation import reconciliation_answer_record

    return reconciliation_answer_record(command_pk=command_pk)


@shared_task(name="operations.reconciliation_statuses", ignore_result=True)
def reconciliation_statuses(charger_identity: str) -> int:
    from .reconciliation import reconciliation_charger_statuses

    return reconciliation_charger_statuses(charger_identity=charger_identity)


@shared_task(name="operations.baseline_apply", ignore_result=True)
def baseline_apply(baseline_pk: int, charger_pk: int, user_pk: int | None = None) -> int:
    """One charger of a model-wide apply; offline chargers get the commands when they connect."""
    from django.contrib.auth.models import User

    from chargers.command_services import CommandRefused
    from chargers.models import Charger

    from .baselines import baseline_apply as apply
    from .models import ConfigurationBaseline

    baseline = ConfigurationBaseline.objects.filter(pk=baseline_pk).first()
    charger = Charger.objects.filter(pk=charger_pk).first()
    if baseline is None or charger is None:
        return 0
    user = User.objects.filter(pk=user_pk).first() if user_pk else None
    try:
        return len(
            apply(baseline=baseline, charger=charger, requested_by=user, deliver_when_offline=True)
        )
    except CommandRefused:
        return 0  # never connected: its version (and so its commands) is not known yet


@shared_task(name="operations.baseline_result", ignore_result=True)
def baseline_result(command_pk: int) -> int:
    from .baselines import baseline_result_record

    return baseline_result_record(command_pk=command_pk)
