from django.apps import AppConfig


class ChargersConfig(AppConfig):
    name = "chargers"
    verbose_name = "Chargers"

    def ready(self) -> None:
        from . import (
            alert_monitor,
            alert_notify,
            firmware_receivers,
            locallist_receivers,
            reservation_receivers,
        )

        alert_monitor.connect()
        alert_notify.connect()
        firmware_receivers.connect()
        locallist_receivers.connect()
        reservation_receivers.connect()
