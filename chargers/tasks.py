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


@shared_task(name="chargers.sweep_reservations", ignore_result=True)
def sweep_reservations() -> dict[str, int]:
    from dataclasses import asdict

    from .reservation_services import reservations_sweep

    return asdict(reservations_sweep())


@shared_task(name="chargers.check_alerts", ignore_result=True)
def check_alerts() -> dict[str, int]:
    from dataclasses import asdict

    from .alert_monitor import monitoring_check

    return asdict(monitoring_check())


@shared_task(name="chargers.deliver_alert_notification", ignore_result=True)
def deliver_alert_notification(delivery_id: int) -> str:
    from .alert_notify import alert_delivery_attempt

    delivery = alert_delivery_attempt(delivery_id=delivery_id)
    return delivery.status if delivery is not None else "not due"


@shared_task(name="chargers.deliver_alert_notifications", ignore_result=True)
def deliver_alert_notifications() -> dict[str, int]:
    from .alert_notify import alert_deliveries_sweep

    return alert_deliveries_sweep()


@shared_task(name="chargers.firmware_status", ignore_result=True)
def firmware_status(charger_pk: int, kind: str, status: str, request_id: int | None) -> None:
    from .firmware_services import FIRMWARE_EVENT_KINDS, firmware_status_record
    from .uploads import DIAGNOSTICS_EVENT_KINDS, diagnostics_status_record

    if kind in FIRMWARE_EVENT_KINDS:
        firmware_status_record(charger_pk=charger_pk, status=status, request_id=request_id)
    elif kind in DIAGNOSTICS_EVENT_KINDS:
        diagnostics_status_record(
            charger_pk=charger_pk, kind=kind, status=status, request_id=request_id
        )


@shared_task(name="chargers.firmware_command_finished", ignore_result=True)
def firmware_command_finished(command_pk: int) -> None:
    from .firmware_services import firmware_command_record
    from .uploads import diagnostics_command_record

    if firmware_command_record(command_pk=command_pk) is None:
        diagnostics_command_record(command_pk=command_pk)


@shared_task(name="chargers.firmware_booted", ignore_result=True)
def firmware_booted(charger_pk: int) -> None:
    from .firmware_services import firmware_boot_record

    firmware_boot_record(charger_pk=charger_pk)


@shared_task(name="chargers.firmware_campaigns_tick", ignore_result=True)
def firmware_campaigns_tick() -> dict[str, int]:
    from .firmware_services import firmware_campaigns_tick as tick
    from .uploads import diagnostics_expire

    return {"timed_out": tick(), "expired_uploads": diagnostics_expire()}


@shared_task(name="chargers.local_list_command_finished", ignore_result=True)
def local_list_command_finished(command_pk: int) -> None:
    from .locallist_services import local_list_command_finished as finished

    finished(command_pk=command_pk)


@shared_task(name="chargers.local_list_connected", ignore_result=True)
def local_list_connected(charger_pk: int) -> None:
    from .locallist_services import local_list_connected as connected

    connected(charger_pk=charger_pk)


@shared_task(name="chargers.local_list_organization_changed", ignore_result=True)
def local_list_organization_changed(organization_pk: int) -> int:
    from .locallist_services import local_list_organization_changed as changed

    return changed(organization_pk=organization_pk)


@shared_task(name="chargers.local_list_sync", ignore_result=True)
def local_list_sync(charger_pk: int, full: bool = False) -> None:
    from .locallist_services import local_list_sync as sync

    sync(charger_pk=charger_pk, full=full)


@shared_task(name="chargers.local_list_check", ignore_result=True)
def local_list_check(charger_pk: int) -> None:
    from .locallist_services import local_list_check as check

    check(charger_pk=charger_pk)


@shared_task(name="chargers.local_lists_retry", ignore_result=True)
def local_lists_retry() -> int:
    from .locallist_services import local_lists_retry as retry

    return retry()
