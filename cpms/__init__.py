"""The CPMS Django project: settings, ASGI entry point, Celery app and tenancy."""

from .celery import app as celery_app

__all__ = ["celery_app"]
