"""The one place the collector writes to the database.

`write_batch` stores a drained `Batch` in one transaction: it registers new
sensors and refreshes when each was last seen (an ORM bulk upsert), then merges
the minute buckets into `Reading`.

Why the merge is SQL rather than `bulk_create(update_conflicts=True)`: Django's
upsert sets each column to the incoming value (``col = EXCLUDED.col``), which
would *overwrite* a minute that a previous run or another collector already
stored. A merge must add counts and sums and keep the lower min and higher max,
atomically per row, and that is what ``INSERT ... ON CONFLICT DO UPDATE SET
samples = samples + EXCLUDED.samples`` does on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice

from django.db import DatabaseError, connection, transaction

from .aggregator import Batch, Bucket, BucketKey
from .models import Reading, Sensor

SUPPORTED_VENDORS = ("sqlite", "postgresql")
ROWS_PER_STATEMENT = 500
MERGE_COLUMNS = 7


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def write_batch(batch: Batch) -> int:
    """Store `batch` atomically; return the number of reading rows written.

    On a database error the connection is closed so the next attempt reconnects,
    and the error propagates: the writer keeps the batch and retries.
    """
    try:
        with transaction.atomic():
            sensor_ids = upsert_sensors(batch)
            return merge_readings(sensor_ids, batch.buckets.items())
    except DatabaseError:
        connection.close()
        raise


def upsert_sensors(batch: Batch) -> dict[str, int]:
    """Create sensors heard for the first time, refresh last seen/address; return MAC -> id."""
    sensors = [
        Sensor(mac=mac, first_seen=_utc(seen.first_seen), last_seen=_utc(seen.last_seen), last_peer=seen.peer or None)
        for mac, seen in batch.sensors.items()
    ]
    Sensor.objects.bulk_create(
        sensors,
        batch_size=ROWS_PER_STATEMENT,
        update_conflicts=True,
        unique_fields=["mac"],
        update_fields=["last_seen", "last_peer"],
    )
    ids: dict[str, int] = {}
    for macs in _chunks(batch.sensors, ROWS_PER_STATEMENT):
        ids.update(Sensor.objects.filter(mac__in=macs).values_list("mac", "id"))
    return ids


def _merge_sql(rows: int) -> str:
    meta = Reading._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["sensor", "metric", "start", "samples", "value_sum", "value_min", "value_max"]
    sensor, metric, start, samples, total, low, high = (quote(meta.get_field(name).column) for name in names)
    least, greatest = ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * rows)
    return (
        f"INSERT INTO {table} ({sensor}, {metric}, {start}, {samples}, {total}, {low}, {high}) "
        f"VALUES {placeholders} "
        f"ON CONFLICT ({sensor}, {metric}, {start}) DO UPDATE SET "
        f"{samples} = {table}.{samples} + EXCLUDED.{samples}, "
        f"{total} = {table}.{total} + EXCLUDED.{total}, "
        f"{low} = {least}({table}.{low}, EXCLUDED.{low}), "
        f"{high} = {greatest}({table}.{high}, EXCLUDED.{high})"
    )


def merge_rows_per_statement() -> int:
    """500 rows, or fewer where SQLite was built with a low bound on SQL variables (999 before 3.32)."""
    if connection.vendor != "sqlite":
        return ROWS_PER_STATEMENT
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, limit // MERGE_COLUMNS))


def merge_readings(sensor_ids: dict[str, int], buckets: Iterable[tuple[BucketKey, Bucket]]) -> int:
    """Add buckets into the stored minutes (insert or merge); return rows written."""
    start_field = Reading._meta.get_field("start")
    written = 0
    with connection.cursor() as cursor:
        for chunk in _chunks(buckets, merge_rows_per_statement()):
            params: list = []
            for (mac, metric, minute), bucket in chunk:
                start = start_field.get_db_prep_value(_utc(minute), connection)
                params += [sensor_ids[mac], metric, start, bucket.count, bucket.total, bucket.low, bucket.high]
            cursor.execute(_merge_sql(len(chunk)), params)
            written += len(chunk)
    return written


def registered_macs() -> list[str]:
    """MACs of the sensors in the database (for COLLECTOR_UNKNOWN_SENSORS=reject)."""
    try:
        return list(Sensor.objects.values_list("mac", flat=True))
    except DatabaseError:
        connection.close()
        raise


def close_connection() -> None:
    """Release this thread's database connection (the writer thread calls it on exit)."""
    connection.close()
