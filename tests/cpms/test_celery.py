"""Celery: a task sent from the code runs, beat keeps its schedule in the database, and the
embedded default runs that schedule inside the server process.

With ``REDIS_URL`` set, tasks go through the Redis broker to a real ``celery -A cpms worker``
process; on the embedded default they run in-process (eager) before ``delay()`` returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from chargers.models import Charger, ChargerEvent
from chargers.tasks import expire_stale_connections
from tests.conftest import ROOT, database_url_for_test_db

pytestmark = pytest.mark.django_db(transaction=True)


# A fresh server-like process on the embedded scheduler, with the beat schedule's intervals cut
# short: it has imported nothing but the settings, as daphne has when the first charger connects.
EMBEDDED_SCHEDULER = """
import asyncio
import django

django.setup()
from django.conf import settings

for entry in settings.CELERY_BEAT_SCHEDULE.values():
    entry["schedule"] = 0.2
from cpms.runtime import start_background


async def main():
    start_background(asyncio.get_running_loop())
    await asyncio.Event().wait()


asyncio.run(main())
"""


@contextmanager
def python_process(*args: str, env: dict[str, str] | None = None) -> Iterator[Callable[[], str]]:
    """``python <args>`` on the test database; yields a function that reads its output."""
    log_path = ROOT / "var" / f"celery-{uuid.uuid4().hex[:8]}.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_test_db(),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield lambda: log_path.read_text(errors="replace")
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_path.unlink(missing_ok=True)


def celery_process(*args: str) -> Any:
    """``celery -A cpms <args>`` on the test database."""
    return python_process("-m", "celery", "-A", "cpms", *args)


def wait_for(
    condition: Callable[[], bool], describe: Callable[[], str], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(describe())


def is_connected(charger: Charger) -> bool:
    return Charger.objects.filter(pk=charger.pk, connected=True).exists()


def test_expire_stale_connections_runs_when_sent(make_charger: Any) -> None:
    stale = make_charger("CP-STALE", connected=True, last_seen=None)
    live = make_charger("CP-LIVE", connected=True, last_seen=timezone.now())

    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Embedded default: no broker and no worker, the task has run when delay() returns.
        result = expire_stale_connections.delay()
        assert result.get() == 1
    else:
        # A dedicated queue, so that the worker takes only this test's message.
        queue = f"test-{uuid.uuid4().hex[:12]}"
        with celery_process(
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--loglevel",
            "info",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ) as worker_log:
            wait_for(
                lambda: "ready." in worker_log(), lambda: f"worker never ready:\n{worker_log()}"
            )
            expire_stale_connections.apply_async(queue=queue)
            wait_for(
                lambda: not is_connected(stale),
                lambda: f"the worker did not run the task:\n{worker_log()}",
            )
            wait_for(
                lambda: (
                    "chargers.expire_stale_connections" in worker_log()
                    and "succeeded" in worker_log()
                ),
                lambda: f"the worker did not report the task:\n{worker_log()}",
            )

    assert not is_connected(stale)
    assert is_connected(live)
    assert list(ChargerEvent.objects.filter(charger=stale).values_list("status", flat=True)) == [
        "Expired"
    ]
    assert not ChargerEvent.objects.filter(charger=live).exists()


def test_beat_keeps_the_schedule_in_the_database(tmp_path: Path) -> None:
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
    assert not PeriodicTask.objects.filter(name="chargers-expire-stale-connections").exists()

    with celery_process(
        "beat", "--loglevel", "info", "--pidfile", str(tmp_path / "beat.pid")
    ) as beat_log:
        wait_for(
            lambda: PeriodicTask.objects.filter(name="chargers-expire-stale-connections").exists(),
            lambda: f"beat did not write its schedule:\n{beat_log()}",
        )
        assert "DatabaseScheduler" in beat_log()

    task = PeriodicTask.objects.get(name="chargers-expire-stale-connections")
    assert task.task == "chargers.expire_stale_connections"
    assert task.enabled
    assert task.interval is not None
    assert (task.interval.every, task.interval.period) == (60, "seconds")


def test_embedded_scheduler_runs_the_periodic_jobs_in_a_fresh_process(make_charger: Any) -> None:
    stale = make_charger("CP-STALE", connected=True, last_seen=None)

    # No REDIS_URL: the embedded default's in-process periodic jobs, on this run's database.
    with python_process("-c", EMBEDDED_SCHEDULER, env={"REDIS_URL": ""}) as output:
        wait_for(
            lambda: not is_connected(stale),
            lambda: f"the periodic job did not run:\n{output()}",
        )
        # The job runner logs "periodic job <name> failed" with a traceback when a job raises.
        assert "periodic job" not in output() and "Traceback" not in output()

    assert list(ChargerEvent.objects.filter(charger=stale).values_list("status", flat=True)) == [
        "Expired"
    ]
