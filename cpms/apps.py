from django.apps import AppConfig


class CpmsConfig(AppConfig):
    name = "cpms"
    verbose_name = "Tenancy"
