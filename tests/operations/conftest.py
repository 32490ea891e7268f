"""Fixtures of the operations tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cpms.celery import app


@pytest.fixture
def celery_inline() -> Iterator[None]:
    """Tasks run where they are sent, as on the embedded default, also when the suite runs with
    a broker: these tests check what a task does; a real worker runs them in tests/e2e."""
    eager, propagates = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = eager, propagates
