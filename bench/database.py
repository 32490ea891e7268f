"""The benchmark's own database: a template prepared once per invocation (migrated, the fleet
registered) and a fresh copy of it for every run of the full stack, so that each run starts from
the same state.

With a PostgreSQL ``DATABASE_URL`` the databases are ``cpms_bench`` and ``cpms_bench_template`` on
that server; without one (the embedded default) they are SQLite files under ``var/``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NAME = "cpms_bench"


@dataclass(frozen=True)
class BenchDatabase:
    """Where the full stack's data lives during a benchmark."""

    url: str
    template_url: str

    @property
    def embedded(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def name(self) -> str:
        return _sqlite_path(self.url) if self.embedded else urlsplit(self.url).path.lstrip("/")

    @property
    def template_name(self) -> str:
        if self.embedded:
            return _sqlite_path(self.template_url)
        return urlsplit(self.template_url).path.lstrip("/")

    def describe(self) -> str:
        if self.embedded:
            return f"SQLite {os.path.relpath(self.name, ROOT)} (embedded default)"
        parts = urlsplit(self.url)
        return f"PostgreSQL {parts.hostname}:{parts.port or 5432}/{self.name}"

    # --- Lifecycle -----------------------------------------------------------------------------

    def reset_template(self) -> None:
        """An empty template, ready to be migrated."""
        if self.embedded:
            _sqlite_remove(self.template_name)
            return
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.template_name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.template_name}"')

    def clone(self) -> None:
        """Replace the run database with a fresh copy of the template."""
        if self.embedded:
            _sqlite_remove(self.name)
            source = sqlite3.connect(self.template_name)
            target = sqlite3.connect(self.name)
            try:
                source.backup(target)
            finally:
                source.close()
                target.close()
            return
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template_name}"')

    def drop(self) -> None:
        if self.embedded:
            _sqlite_remove(self.name)
            _sqlite_remove(self.template_name)
            return
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'DROP DATABASE IF EXISTS "{self.template_name}" WITH (FORCE)')

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        parts = urlsplit(self.url)
        admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
        return psycopg.connect(admin_url, autocommit=True)


def bench_database(database_url: str | None, *, explicit: bool = False) -> BenchDatabase:
    """The benchmark database for ``database_url``.

    From the environment's ``DATABASE_URL`` (``explicit`` False) it is ``cpms_bench`` on the same
    PostgreSQL server, or ``var/bench.sqlite3`` when there is none. A URL given explicitly is used
    as it is, but its name must contain "bench": the harness drops and recreates that database.
    """
    if not database_url:
        database_url = f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}"
        explicit = True
    if database_url.startswith("sqlite:"):
        path = _sqlite_path(database_url) if explicit else str(ROOT / "var" / "bench.sqlite3")
        _check_name(Path(path).name)
        stem = path.removesuffix(".sqlite3")
        return BenchDatabase(
            url=f"sqlite:///{path}", template_url=f"sqlite:///{stem}-template.sqlite3"
        )
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"the benchmark runs on PostgreSQL or SQLite, not {parts.scheme!r}")
    name = parts.path.lstrip("/") if explicit else DEFAULT_NAME
    _check_name(name)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    template = urlunsplit((parts.scheme, parts.netloc, f"/{name}_template", parts.query, ""))
    return BenchDatabase(url=url, template_url=template)


def _check_name(name: str) -> None:
    if "bench" not in name:
        raise SystemExit(
            f"refusing to use database {name!r}: the benchmark drops and recreates its database, "
            f"so its name must contain 'bench'"
        )


def _sqlite_path(url: str) -> str:
    # sqlite:////abs/path and sqlite:///relative/path, as django-environ reads them.
    rest = url.removeprefix("sqlite://")
    path = Path(rest[1:] if rest.startswith("/") else rest)
    return str(path if path.is_absolute() else ROOT / path)


def _sqlite_remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)
