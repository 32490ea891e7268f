"""Bulk writes of the gateway's hot path, in the fewest statements the database allows.

On PostgreSQL, journal frames go in with ``COPY``, meter samples with ``COPY`` into a temporary
table and one ``INSERT ... SELECT`` that skips those already stored, and last-seen times in one
``UPDATE ... FROM unnest(...)``: no model instances, no per-row SQL. Other databases (SQLite, the
embedded default) use the ORM's bulk statements. Errors come out as Django's database errors either way, so the batch
writer tells refused rows from an unreachable database the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from .models import Charger, Frame, MeterSample


def _column(model: Any, name: str) -> str:
    """The database column of a concrete field."""
    column = model._meta.get_field(name).column
    assert isinstance(column, str), name
    return column


# Frame columns in the order the rows give them.
FRAME_FIELDS = (
    "charger_id",
    "charger_identity",
    "leg",
    "direction",
    "kind",
    "message_id",
    "original_message_id",
    "action",
    "raw",
    "timestamp",
)


def frames_insert(rows: Sequence[tuple[Any, ...]]) -> None:
    """Append journal frames, each a tuple of ``FRAME_FIELDS`` values."""
    if not rows:
        return
    connection = connections[router.db_for_write(Frame)]
    if connection.vendor != "postgresql":
        Frame.objects.bulk_create(
            [Frame(**dict(zip(FRAME_FIELDS, row, strict=True))) for row in rows]
        )
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(Frame, name)) for name in FRAME_FIELDS)
    statement = f"COPY {quote(Frame._meta.db_table)} ({columns}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


# MeterSample columns in the order the rows give them (corrections as JSON text).
SAMPLE_FIELDS = (
    "charger_id",
    "connector_number",
    "session_id",
    "timestamp",
    "measurand",
    "phase",
    "location",
    "context",
    "value",
    "unit",
    "raw_value",
    "raw_unit",
    "signed_data",
    "corrections",
)


def samples_insert(rows: Sequence[tuple[Any, ...]]) -> int:
    """Store meter samples, each a tuple of ``SAMPLE_FIELDS`` values, skipping any the database
    already has (the same reading sent again); how many were new."""
    if not rows:
        return 0
    connection = connections[router.db_for_write(MeterSample)]
    if connection.vendor != "postgresql":
        return insert_new(
            MeterSample,
            [
                MeterSample(
                    **{
                        **dict(zip(SAMPLE_FIELDS, row, strict=True)),
                        "corrections": json.loads(row[-1]),
                    }
                )
                for row in rows
            ],
        )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(MeterSample, name)) for name in SAMPLE_FIELDS)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # Emptied at each commit; the IF NOT EXISTS keeps no state about the connection here.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS cpms_samples_in ON COMMIT DELETE ROWS AS"
            f" SELECT {columns} FROM {quote(MeterSample._meta.db_table)} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY cpms_samples_in ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {quote(MeterSample._meta.db_table)} ({columns})"
            f" SELECT {columns} FROM cpms_samples_in ON CONFLICT DO NOTHING"
        )
        inserted = max(cursor.rowcount, 0)
        cursor.execute("DELETE FROM cpms_samples_in")
    return inserted


def insert_new(model: type[Model], objects: list[Any]) -> int:
    """``bulk_create(objects, ignore_conflicts=True)`` that also says how many rows were new (the
    database's row count, which bulk_create does not return)."""
    if not objects:
        return 0
    connection = connections[router.db_for_write(model)]
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    batch = max(connection.ops.bulk_batch_size(fields, objects), 1)
    inserted = 0
    with connection.cursor() as cursor:
        for offset in range(0, len(objects), batch):
            query = InsertQuery(model, on_conflict=OnConflict.IGNORE)
            query.insert_values(fields, objects[offset : offset + batch])
            for statement, params in query.get_compiler(connection=connection).as_sql():
                cursor.execute(statement, params)
                inserted += max(cursor.rowcount, 0)
    return inserted


def last_seen_update(seen: dict[int, datetime]) -> None:
    """Set each charger's last-seen time, in one statement."""
    rows_update(
        Charger, ["last_seen"], [(charger_pk, moment) for charger_pk, moment in seen.items()]
    )


def rows_update(model: type[Model], fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Set ``fields`` of many rows, each given as ``(pk, *values)``, in one statement.

    The rows are locked in ascending pk order, whatever order they come in: the one order every
    batched writer of charger rows keeps (``chargers_boot_many`` too), so two processes writing
    the same chargers' rows at once may wait for each other, never in a circle.

    On PostgreSQL: ``UPDATE ... FROM unnest(<one array per column>)``, joined to a subquery that
    locks the rows ``ORDER BY pk FOR NO KEY UPDATE``. It locks each row as its sorted rows come
    out, and the UPDATE reaches a row only once the subquery has given it, so whichever way the
    planner joins them the locks are taken in pk order. Elsewhere the ORM's ``bulk_update``, in
    pk order. A row given twice gets one of its values (give each once).
    """
    if not rows:
        return
    rows = sorted(rows, key=lambda row: row[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(
            [model(pk=row[0], **dict(zip(fields, row[1:], strict=True))) for row in rows],
            list(fields),
            batch_size=500,
        )
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [model._meta.pk, *(model._meta.get_field(name) for name in fields)]
    names = [quote(column.column) for column in columns]  # type: ignore[union-attr,arg-type]
    casts = [f"%s::{column.db_type(connection)}[]" for column in columns]
    assignments = ", ".join(f"{name} = new.{name}" for name in names[1:])
    # Writing a key (unique) column takes the stronger lock: the UPDATE would take it anyway.
    writes_key = any(getattr(column, "unique", False) for column in columns[1:])
    strength = "UPDATE" if writes_key else "NO KEY UPDATE"
    pk = names[0]
    values = [list(values) for values in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS target SET {assignments}"
            f" FROM (SELECT {pk} FROM {table} WHERE {pk} = ANY({casts[0]})"
            f" ORDER BY {pk} FOR {strength}) AS locked,"
            f" unnest({', '.join(casts)}) AS new({', '.join(names)})"
            f" WHERE target.{pk} = locked.{pk} AND new.{pk} = locked.{pk}",
            [values[0], *values],
        )
