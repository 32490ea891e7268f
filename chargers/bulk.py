"""Bulk writes of the gateway's hot path, in the fewest statements the database allows.

On PostgreSQL, journal frames go in with ``COPY`` and last-seen times in one ``UPDATE ... FROM
unnest(...)``: no model instances, no per-row SQL. Other databases (SQLite, the embedded default)
use the ORM's bulk statements. Errors come out as Django's database errors either way, so the batch
writer tells refused rows from an unreachable database the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connections, router

from .models import Charger, Frame

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
        Frame.objects.bulk_create([Frame(**dict(zip(FRAME_FIELDS, row, strict=True))) for row in rows])
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Frame._meta.get_field(name).column) for name in FRAME_FIELDS)
    statement = f"COPY {quote(Frame._meta.db_table)} ({columns}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def last_seen_update(seen: dict[int, datetime]) -> None:
    """Set each charger's last-seen time, in one statement."""
    if not seen:
        return
    connection = connections[router.db_for_write(Charger)]
    if connection.vendor != "postgresql":
        Charger.objects.bulk_update(
            [Charger(pk=charger_pk, last_seen=moment) for charger_pk, moment in seen.items()],
            ["last_seen"],
            batch_size=500,
        )
        return
    table = connection.ops.quote_name(Charger._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS charger SET last_seen = seen.moment"
            " FROM unnest(%s::bigint[], %s::timestamptz[]) AS seen(id, moment)"
            " WHERE charger.id = seen.id",
            [list(seen), list(seen.values())],
        )
