from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Upstream routing"

    def ready(self) -> None:
        from .health import metrics_register

        metrics_register()
