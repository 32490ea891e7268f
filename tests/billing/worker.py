"""A real Celery worker for billing tests on PostgreSQL + Redis, where tasks go through the
broker; on the embedded default tasks run in-process (eager) and no worker is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import ROOT, database_url_for_test_db


# Per module, never longer: a worker left running would take every later test's tasks from the
# broker, with this process's settings rather than theirs.
@pytest.fixture(scope="module")
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    log_path = ROOT / "var" / f"celery-billing-{uuid.uuid4().hex[:8]}.log"
    env = {**os.environ, "DATABASE_URL": database_url_for_test_db(), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cpms",
                "worker",
                "--pool",
                "solo",
                "--queues",
                "default",
                "--purge",
                "--loglevel",
                "info",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while "ready." not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker never ready:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_path.unlink(missing_ok=True)


def wait_for(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    """Poll until ``check()`` is true: a task the worker runs lands when it lands."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what or check}")
        time.sleep(0.1)
