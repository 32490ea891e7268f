"""The Celery application. ``celery -A cpms worker`` and ``celery -A cpms beat`` load this."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")

app = Celery("cpms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
