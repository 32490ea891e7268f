"""Celery tasks of load management: thin, ids in, a service does the work."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="smartcharging.rebalance_site", ignore_result=True)
def rebalance_site(site_pk: int, reason: str = "") -> int:
    from .services import site_rebalance

    return len(site_rebalance(site_pk=site_pk).sent)


@shared_task(name="smartcharging.rebalance_all", ignore_result=True)
def rebalance_all() -> int:
    from .services import managed_sites_rebalance

    return managed_sites_rebalance()


@shared_task(name="smartcharging.send_failsafe_profiles", ignore_result=True)
def send_failsafe_profiles(site_pk: int) -> int:
    from .services import site_failsafe_send

    return site_failsafe_send(site_pk=site_pk)


@shared_task(name="smartcharging.charger_failsafe", ignore_result=True)
def charger_failsafe(charger_pk: int) -> int:
    from chargers.models import Charger

    from .services import charger_failsafe_send

    charger = Charger.objects.filter(pk=charger_pk).first()
    return len(charger_failsafe_send(charger=charger)) if charger else 0


@shared_task(name="smartcharging.profile_answered", ignore_result=True)
def profile_answered(command_pk: int) -> None:
    from .services import profile_command_answered

    profile_command_answered(command_pk=command_pk)


@shared_task(name="smartcharging.session_measured", ignore_result=True)
def session_measured(session_pk: int, measured_a: float) -> None:
    from chargers.models import Session

    from .services import session_measured as record

    result = record(session_pk=session_pk, measured_a=measured_a)
    if result.changed_picture:
        site_pk = Session.objects.filter(pk=session_pk).values_list("charger__site_id", flat=True)
        first = site_pk.first()
        if first is not None:
            rebalance_site.delay(first, "measurement")


@shared_task(name="smartcharging.session_ended", ignore_result=True)
def session_ended(session_pk: int, site_pk: int) -> None:
    from .services import session_limit_release, site_rebalance

    session_limit_release(session_pk=session_pk)
    site_rebalance(site_pk=site_pk)
