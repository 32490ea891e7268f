"""A real Celery worker beside the real server when the suite runs with a broker (REDIS_URL):
the server hands domain-event work to Celery tasks, which a worker must run, as in production.
On the embedded default tasks run in-process and no worker is started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from tests.cpms.test_celery import celery_process, wait_for


@pytest.fixture(scope="module")
def celery_worker(server_process: Any) -> Iterator[None]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    with celery_process(
        "worker",
        "--pool",
        "solo",
        "--queues",
        settings.CELERY_TASK_DEFAULT_QUEUE,
        "--purge",
        "--loglevel",
        "info",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ) as worker_log:
        wait_for(lambda: "ready." in worker_log(), lambda: f"worker never ready:\n{worker_log()}")
        yield
