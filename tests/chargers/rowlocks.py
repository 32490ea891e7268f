"""Two database sessions at once, for tests of what another process's writes do: a call run on a
connection of its own (a thread, as another process would), a wait until that call waits for a
row lock, and which rows are locked (PostgreSQL; SQLite locks the whole database instead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection

# A lock wait longer than this is a hang, not a test outcome.
LOCK_TIMEOUT = "20s"


class OtherConnection:
    """``function()`` run at once on a thread with a database connection of its own."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.backend_pid: int | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout=30):
            raise TimeoutError("the other connection did not open")

    def _run(self) -> None:
        try:
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.backend_pid = cursor.fetchone()[0]
                    cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            self._connected.set()
            self.result = self.function()
        except BaseException as exc:  # handed to the test in outcome()
            self.error = exc
        finally:
            self._connected.set()
            connection.close()

    def outcome(self, timeout: float = 60.0) -> Any:
        """What ``function()`` returned; what it raised is raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the other connection's call did not end")
        if self.error is not None:
            raise self.error
        return self.result

    def wait_until_blocked(self, timeout: float = 20.0) -> None:
        """Return once the call waits for a lock another session holds (PostgreSQL only)."""
        assert connection.vendor == "postgresql"
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                # Not pg_stat_activity: inside a transaction it is read once and kept.
                cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", [self.backend_pid])
                if cursor.fetchone()[0]:
                    return
                if not self._thread.is_alive():
                    self.outcome()  # raises what it raised
                    raise AssertionError("the call ended without waiting for a lock")
                time.sleep(0.01)
        raise TimeoutError("the other connection's call never waited for a lock")


def locked_rows(table: str, pks: list[int]) -> set[int]:
    """Which of ``pks`` some other transaction holds locked for a write (a FOR NO KEY UPDATE
    lock or stronger; not the key-share locks of rows referencing them), asked from a connection
    of its own (PostgreSQL only)."""

    def ask() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {connection.ops.quote_name(table)} WHERE id = ANY(%s)"
                " FOR NO KEY UPDATE SKIP LOCKED",
                [pks],
            )
            free = {row[0] for row in cursor.fetchall()}
        return set(pks) - free

    assert connection.vendor == "postgresql"
    return OtherConnection(ask).outcome()
