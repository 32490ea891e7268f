"""Shared fixtures: tenants and chargers, and a real daphne server process for end-to-end tests.

With ``DATABASE_URL``/``REDIS_URL`` set the suite runs on PostgreSQL and Redis; without, on the
embedded default (a SQLite file shared with the server process, in-memory channel layer).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from chargers import events, services
from chargers.models import Charger, IdToken, Site
from cpms.models import Organization

ROOT = Path(__file__).resolve().parent.parent
CHARGER_PASSWORD = "test-charger-secret-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_test_db() -> str:
    """A DATABASE_URL that points a child process at the test database of this run."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


class ServerProcess:
    """``daphne cpms.asgi:application`` on a free port, pointed at the test database, with
    ``daphne_args`` before the application; with ``serve``, ``python -m cpms.serve`` and those
    arguments instead."""

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        *,
        preexec_fn: Callable[[], None] | None = None,
        serve: list[str] | None = None,
        daphne_args: list[str] | None = None,
    ):
        self.port = free_port()
        self.log_path = ROOT / "var" / f"server-{self.port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_test_db(),
            "CPMS_FLUSH_INTERVAL": "0.05",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        command += [*(daphne_args or []), "cpms.asgi:application"]
        if serve is not None:
            command = [sys.executable, "-m", "cpms.serve", "--port", str(self.port), *serve]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        self._wait_ready()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.log()}")

    def log(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def server_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerProcess]:
    """One real server process for the whole session."""
    process = ServerProcess()
    try:
        yield process
    finally:
        process.stop()


def wait_until_quiet(timeout: float = 10.0) -> None:
    """Wait until the server has closed every charger connection and flushed its buffers, so
    that the database flush between tests never races with the server's own writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Charger.objects.filter(connected=True).exists():
            break
        time.sleep(0.05)
    time.sleep(0.2)  # a few flush intervals of the server's batch writer


# What a failing end-to-end test shows besides its traceback.
SERVER_LOG_START = pytest.StashKey[tuple[ServerProcess, int]]()
BROWSER_CONSOLE = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # A failing test that talked to the server shows what the server logged meanwhile.
    start = item.stash.get(SERVER_LOG_START, None)
    if start is not None and report.failed:
        process, offset = start
        text = process.log(offset)
        report.sections.append(("server log", text[-20_000:] or "(nothing)"))
    console = item.stash.get(BROWSER_CONSOLE, None)
    if console and report.failed:
        report.sections.append(("browser console", "\n".join(console)[-20_000:]))
    return report


@pytest.fixture(autouse=True)
def _browser_console(request: pytest.FixtureRequest) -> None:
    """A failing browser test shows what its page wrote to the console, and its errors."""
    if "page" not in request.fixturenames:
        return
    page = request.getfixturevalue("page")
    lines: list[str] = []
    request.node.stash[BROWSER_CONSOLE] = lines
    page.on("console", lambda message: lines.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: lines.append(f"error: {error}"))


@pytest.fixture
def server(
    request: pytest.FixtureRequest, transactional_db: Any, server_process: ServerProcess
) -> Iterator[ServerProcess]:
    """The real server, with data committed so that it sees what the test creates."""
    request.node.stash[SERVER_LOG_START] = (server_process, server_process.log_size())
    yield server_process
    wait_until_quiet()


def booted(charger: Charger | str) -> events.DomainEvent:
    """A charger's accepted boot as a domain event; given a bare identity, one of a charger the
    database does not know."""
    if isinstance(charger, str):
        return events.DomainEvent("charger.booted", 0, charger, {"status": "Accepted"})
    return events.DomainEvent(
        "charger.booted", charger.organization_id, charger.identity, {"status": "Accepted"}
    )


@pytest.fixture
def organization(db: Any) -> Organization:
    return Organization.objects.create(name="Acme Charging", slug="acme")


@pytest.fixture
def site(organization: Organization) -> Site:
    return Site.objects.create(
        organization=organization, name="Depot", time_zone="Europe/Amsterdam"
    )


@pytest.fixture
def make_charger(organization: Organization, site: Site) -> Any:
    def make(
        identity: str = "CP-1", password: str | None = CHARGER_PASSWORD, **fields: Any
    ) -> Charger:
        charger = services.charger_create(
            identity=identity, organization=organization, password=password, site=site
        )
        if fields:
            Charger.objects.filter(pk=charger.pk).update(**fields)
            charger.refresh_from_db()
        return charger

    return make


@pytest.fixture
def charger(make_charger: Any) -> Charger:
    return make_charger()


@pytest.fixture
def id_token(organization: Organization) -> IdToken:
    return services.id_token_create(organization=organization, token="TAG-OK")


@pytest.fixture
def tasks_sent() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """The Celery tasks sent, in order, as (name, arguments). They run where they are sent, as on
    the embedded default, also when the suite runs with a broker."""
    from celery.signals import task_prerun

    from cpms.celery import app

    sent: list[tuple[str, tuple[Any, ...]]] = []

    def record(sender: Any, *, args: Any = (), **_: Any) -> None:
        sent.append((sender.name, tuple(args)))

    eager, propagates = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    task_prerun.connect(record, weak=False)
    yield sent
    task_prerun.disconnect(record)
    app.conf.task_always_eager, app.conf.task_eager_propagates = eager, propagates


def _retry_flush_on_deadlock() -> None:
    """Between end-to-end tests the test database is emptied with TRUNCATE while the session's
    server process may still run a background query (a batch flush, a command sweep); PostgreSQL
    then resolves the lock cycle by cancelling one side. The server retries its own work; here the
    emptying is retried too, instead of failing the run on a race that no user can meet."""
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except Exception as exc:  # CommandError wraps the OperationalError
                cause = exc.__cause__ or exc
                if (
                    attempt == 4
                    or not isinstance(cause, OperationalError | type(exc))
                    or ("deadlock" not in str(cause) and "lock" not in str(cause))
                ):
                    raise
                time.sleep(0.2 * (attempt + 1))

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]


_retry_flush_on_deadlock()
