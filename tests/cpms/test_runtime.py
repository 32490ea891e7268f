"""The ASGI server process: finished HTTP requests leave no database connection open behind them.

Every request runs its database work in a thread of its own; a connection kept for reuse there would
linger until garbage collection, and a busy server would run the database out of connections.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import urlopen

import psutil
import pytest
from django.conf import settings

from tests.conftest import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The long-lived thread that consumers and the batch writer share may keep one connection.
KEPT_CONNECTIONS = 1


def database_connections(pid: int) -> int:
    """Connections the process holds to the test database: TCP sockets to PostgreSQL, or open
    handles on the SQLite file."""
    process = psutil.Process(pid)
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = Path(db["NAME"]).resolve()
        return sum(1 for f in process.open_files() if Path(f.path).resolve() == name)
    port = int(db.get("PORT") or 5432)
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_finished_requests_close_their_database_connections(server: ServerProcess) -> None:
    def ready(_: int) -> int:
        with urlopen(f"{server.http_url}/readyz", timeout=30) as response:
            return response.status

    # The gateway's own database threads keep one connection each for the charger sockets that
    # earlier tests of this session opened; only what the requests below add is counted.
    before = database_connections(server.process.pid)
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(ready, range(60)))
    assert statuses == [200] * 60

    # A request closes its connection just after its response is sent: give it that moment.
    deadline = time.monotonic() + 10
    while database_connections(server.process.pid) > before + KEPT_CONNECTIONS:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert database_connections(server.process.pid) <= before + KEPT_CONNECTIONS
