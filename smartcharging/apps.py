from django.apps import AppConfig


class SmartchargingConfig(AppConfig):
    name = "smartcharging"
    verbose_name = "Smart charging"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()
