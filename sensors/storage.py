"""The one place the collector writes to the database.

`write_batch` stores a drained `Batch` in one transaction: it registers new
sensors and refreshes when each was last seen, then sends the minute buckets
once, into a temporary table, from which the database merges them into
`Reading`, re-keyed to hours and days into `HourlyReading` and `DailyReading`,
and the newest minute of each sensor and metric into `CurrentReading`. Because the rollups are merged in
the transaction that writes the minutes, they hold exactly the samples of their
minutes whatever happens later: a restart, a late flush after an outage, a
second collector, or the retention purge deleting old minutes.

Why the merge is SQL rather than `bulk_create(update_conflicts=True)`: Django's
upsert sets each column to the incoming value (``col = EXCLUDED.col``), which
would *overwrite* a minute that a previous run or another collector already
stored. A merge must add counts and sums and keep the lower min and higher max,
atomically per row, and that is what ``INSERT ... ON CONFLICT DO UPDATE SET
samples = samples + EXCLUDED.samples`` does on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from .identity import source_of
from .ingest.aggregator import Batch, Bucket, BucketKey
from .ingest.aggregator import RefusedSensor as RefusedSeen
from .models import (
    CurrentReading,
    DailyReading,
    HourlyReading,
    JournalMark,
    LiveReading,
    Reading,
    ReadingFields,
    RefusedSensor,
    Sensor,
)

logger = logging.getLogger(__name__)

SUPPORTED_VENDORS = ("sqlite", "postgresql")
ROWS_PER_STATEMENT = 500
MERGE_COLUMNS = 7
ROLLUPS = (HourlyReading, DailyReading)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def write_batch(batch: Batch) -> int:
    """Store `batch` atomically; return the number of minute rows written (rollup rows not counted).

    On a database error the connection is closed so the next attempt reconnects,
    and the error propagates: the writer keeps the batch and retries. A batch from a
    journal moves that journal's marks on in the same transaction, and the minutes
    whose mark already reaches the batch (stored by an earlier attempt) are left out.
    """
    try:
        with transaction.atomic():
            record_refused(batch.refused)
            if batch.journal is not None and batch.marks:
                batch = _unstored_part(batch)
            record_discovered(batch.discovered)
            record_availability(batch.availability)
            if not batch.sensors:
                return 0
            sensor_ids = upsert_sensors(batch)
            written = merge_buckets(sensor_ids, batch.buckets.items())
            merge_live(sensor_ids, batch)
            return written
    except DatabaseError:
        connection.close()
        raise


def _unstored_part(batch: Batch) -> Batch:
    """The batch without the minutes its journal marks say are stored; the marks moved on to the batch's."""
    journal = batch.journal
    # A range, not an IN list: a replayed batch can span thousands of minutes (SQLite's variable limit).
    stored = dict(
        JournalMark.objects.filter(
            journal=journal, minute__gte=min(batch.marks), minute__lte=max(batch.marks)
        ).values_list("minute", "seq")
    )
    done = {minute for minute, seq in batch.marks.items() if stored.get(minute, 0) >= seq}
    marks = [JournalMark(journal=journal, minute=minute, seq=seq) for minute, seq in batch.marks.items()]
    JournalMark.objects.bulk_create(
        [mark for mark in marks if mark.minute not in done],
        batch_size=ROWS_PER_STATEMENT,
        update_conflicts=True,
        unique_fields=["journal", "minute"],
        update_fields=["seq"],
    )
    if batch.keep_marks_from:
        JournalMark.objects.filter(journal=journal, minute__lt=batch.keep_marks_from).delete()
    if not done:
        return batch
    logger.warning(
        "journal %s: %d minutes of this batch were stored by an earlier attempt (a COMMIT whose answer was "
        "lost); writing only the rest",
        journal,
        len(done),
    )
    kept = Batch(
        journal=journal,
        seq=batch.seq,
        complete=batch.complete,
        refused={},
        availability=batch.availability,
        discovered=batch.discovered,
    )
    kept.buckets = {key: bucket for key, bucket in batch.buckets.items() if key[2] not in done}
    kept.sensors = batch.sensors if kept.buckets else {}
    kept.marks = {minute: seq for minute, seq in batch.marks.items() if minute not in done}
    return kept


def forget_journal(journal: str) -> None:
    """Delete the marks of a journal that was replayed and removed."""
    JournalMark.objects.filter(journal=journal).delete()


def newest_journal_mark(journal: str) -> int:
    """The highest record number the database holds a mark of, for `journal` (0: none)."""
    try:
        return JournalMark.objects.filter(journal=journal).aggregate(models.Max("seq"))["seq__max"] or 0
    except DatabaseError:
        connection.close()
        raise


def journal_marks(journal: str) -> dict[int, int]:
    """minute -> seq: how far into `journal` each minute is stored (for a replay)."""
    try:
        return dict(JournalMark.objects.filter(journal=journal).values_list("minute", "seq"))
    except DatabaseError:
        connection.close()
        raise


def upsert_sensors(batch: Batch) -> dict[str, int]:
    """Create sensors heard for the first time, refresh last seen/address; return device id -> id."""
    ids = _refresh_sensors(batch)
    if len(ids) == len(batch.sensors):
        return ids
    return ids | _create_sensors(batch, [mac for mac in batch.sensors if mac not in ids])


def _refresh_sensors(batch: Batch) -> dict[str, int]:
    """Refresh the known sensors from a temporary table in one UPDATE ... FROM ... RETURNING; return their ids.

    Thousands of boards report in every batch; the ORM's upsert of 10,000 sensors cost more
    than merging all their readings (0.7 s a flush on SQLite).
    """
    quote = connection.ops.quote_name
    table = quote(Sensor._meta.db_table)
    mac, last_seen, last_peer, pk = (
        quote(Sensor._meta.get_field(name).column) for name in ("device_id", "last_seen", "last_peer", "id")
    )
    moment = Sensor._meta.get_field("last_seen").get_db_prep_value  # SQLite: Django's stored text
    rows = (
        (address, moment(_utc(seen.last_seen), connection), seen.peer or None)
        for address, seen in batch.sensors.items()
    )
    # The columns are named apart from the sensor's, so RETURNING's unqualified names are the sensor's
    # (one spelling for both databases). "inet" is PostgreSQL's address type; to SQLite it is a
    # name with numeric affinity, which leaves an address (never a well-formed number) as text.
    with _filled_table(SEEN_TABLE, "seen_mac text, seen_at timestamptz, seen_peer inet", rows) as (cursor, _):
        cursor.execute(
            f"UPDATE {table} SET {last_seen} = t.seen_at, {last_peer} = t.seen_peer "
            f"FROM {SEEN_TABLE} AS t WHERE {table}.{mac} = t.seen_mac RETURNING {mac}, {pk}"
        )
        ids = dict(cursor.fetchall())
    return ids


def _create_sensors(batch: Batch, macs: list[str]) -> dict[str, int]:
    """The ORM's bulk upsert: new sensors are created, known ones get last seen and address."""
    sensors = []
    for mac in macs:
        seen = batch.sensors[mac]
        sensors.append(
            Sensor(
                device_id=mac,
                source=source_of(mac),
                first_seen=_utc(seen.first_seen),
                last_seen=_utc(seen.last_seen),
                last_peer=seen.peer or None,
            )
        )
    Sensor.objects.bulk_create(
        sensors,
        batch_size=ROWS_PER_STATEMENT,
        update_conflicts=True,
        unique_fields=["device_id"],
        update_fields=["last_seen", "last_peer"],
    )
    if all(sensor.pk is not None for sensor in sensors):  # the upsert returned ids (PostgreSQL, SQLite 3.35+)
        return {sensor.device_id: sensor.pk for sensor in sensors}
    ids: dict[str, int] = {}
    for chunk in _chunks(macs, ROWS_PER_STATEMENT):
        ids.update(Sensor.objects.filter(device_id__in=chunk).values_list("device_id", "id"))
    return ids


SEEN_TABLE = "greenhouse_seen_sensors"
MERGE_TABLE = "greenhouse_merge_rows"
MERGE_TABLE_COLUMNS = (
    "sensor bigint, metric text, start bigint, samples integer, "
    "value_sum double precision, value_min double precision, value_max double precision"
)


def merge_buckets(
    sensor_ids: dict,
    buckets: Iterable[tuple[BucketKey, Bucket]],
    into: Iterable[type[ReadingFields]] = (Reading, *ROLLUPS),
    current: bool = True,
) -> int:
    """Add minute buckets into the stored rows of each model of `into` (minutes, hours, days: insert
    or merge) and (`current`) the newest minute of each sensor and metric into CurrentReading;
    return the buckets sent.

    The rows are sent once, into a temporary table; the database re-keys them to each model's
    interval and merges them. On SQLite that halved the Python work of a 30,000-bucket flush
    (coarsening in Python and binding 210,000 parameters per table, docs/benchmarks.md).
    """
    rows = (  # int(): the table's start is bigint on PostgreSQL, where a float minute would not COPY
        (sensor_ids[sensor], metric, int(start), bucket.count, bucket.total, bucket.low, bucket.high)
        for (sensor, metric, start), bucket in buckets
    )
    with _filled_table(MERGE_TABLE, MERGE_TABLE_COLUMNS, rows) as (cursor, written):
        for model in into:
            cursor.execute(_merge_sql(model, _rekeyed(model.SECONDS)))
        if current:
            cursor.execute(_current_merge_sql(_current_from_merge_table()))
    return written


@contextmanager
def _filled_table(table: str, columns: str, rows: Iterable[tuple]) -> Iterator[tuple[Any, int]]:
    """`rows` in temporary `table` for the statements of the block; yields (cursor, count).

    PostgreSQL COPYs them; SQLite inserts them in VALUES chunks. The table is emptied after the
    block, ready for the next use by the connection; on PostgreSQL it lives until commit.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DROP")
            count = 0
            with cursor.cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns})")
            count = _execute_values(lambda values: f"INSERT INTO {table} {values}", rows, columns.count(",") + 1)
        yield cursor, count
        cursor.execute(f"TRUNCATE {table}" if connection.vendor == "postgresql" else f"DELETE FROM {table}")


def _moment(epoch: str) -> str:
    """SQL for the database's timestamp of `epoch` (an SQL expression of Unix seconds).

    SQLite's datetime() gives the text Django stores a DateTimeField as ('YYYY-MM-DD HH:MM:SS',
    UTC), so the rows it writes meet those written through the ORM in the same unique index.
    """
    if connection.vendor == "sqlite":
        return f"datetime({epoch}, 'unixepoch')"
    return f"to_timestamp({epoch})"


def _rekeyed(seconds: int) -> str:
    """The merge table's minute rows re-keyed to `seconds`-long UTC intervals and merged.

    Intervals are counted from the Unix epoch, so days are UTC days. An hour or a day is the
    merge of its minutes, so a batch's rollup is added to a stored one just as a minute is.
    The rows hold one bucket per sensor, metric and minute: minutes are taken as they are.
    WHERE true: SQLite's parser needs it before ON CONFLICT.
    """
    if seconds == Reading.SECONDS:
        return (
            f"SELECT sensor, metric, {_moment('start')}, samples, value_sum, value_min, value_max "
            f"FROM {MERGE_TABLE} WHERE true"
        )
    interval = f"(start / {int(seconds)}) * {int(seconds)}"
    return (
        f"SELECT sensor, metric, {_moment(interval)}, SUM(samples), SUM(value_sum), MIN(value_min), "
        f"MAX(value_max) FROM {MERGE_TABLE} WHERE true GROUP BY sensor, metric, {interval}"
    )


def _merge_sql(model: type[ReadingFields], source: str) -> str:
    """One INSERT ... ON CONFLICT statement adding the rows of `source` (a VALUES list or a SELECT)."""
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["sensor", "metric", "start", "samples", "value_sum", "value_min", "value_max"]
    sensor, metric, start, samples, total, low, high = (quote(meta.get_field(name).column) for name in names)
    least, greatest = ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")
    return (
        f"INSERT INTO {table} ({sensor}, {metric}, {start}, {samples}, {total}, {low}, {high}) "
        f"{source} "
        f"ON CONFLICT ({sensor}, {metric}, {start}) DO UPDATE SET "
        f"{samples} = {table}.{samples} + EXCLUDED.{samples}, "
        f"{total} = {table}.{total} + EXCLUDED.{total}, "
        f"{low} = {least}({table}.{low}, EXCLUDED.{low}), "
        f"{high} = {greatest}({table}.{high}, EXCLUDED.{high})"
    )


def _values_list(rows: int, columns: int = MERGE_COLUMNS) -> str:
    """The rows bound as a VALUES list (`columns` parameters a row)."""
    return "VALUES " + ", ".join(["(" + ", ".join(["%s"] * columns) + ")"] * rows)


def _execute_values(statement: Callable[[str], str], rows: Iterable[tuple], columns: int) -> int:
    """Run `statement(VALUES list)` over `rows` in chunks that fit the database's bound on
    parameters (`merge_rows_per_statement`); return the rows sent."""
    sent = 0
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, merge_rows_per_statement(columns)):
            cursor.execute(statement(_values_list(len(chunk), columns)), [value for row in chunk for value in row])
            sent += len(chunk)
    return sent


def merge_rows_per_statement(columns: int = MERGE_COLUMNS) -> int:
    """500 rows, or fewer where SQLite was built with a low bound on SQL variables (999 before 3.32)."""
    if connection.vendor != "sqlite":
        return ROWS_PER_STATEMENT
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, limit // columns))


# --- the current values: one row per sensor and metric, the newest minute -----------------------
def _current_merge_sql(source: str) -> str:
    """INSERT ... ON CONFLICT keeping, per sensor and metric, the newest minute (merged when it is the same minute).

    A batch's minute newer than the stored one replaces it; the same minute adds up (a second
    collector, a restart within the minute); an older one (a late flush after an outage) leaves
    the row alone. The right-hand sides all read the row as it was before the update.
    """
    meta = CurrentReading._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["sensor", "metric", "start", "samples", "value_sum", "value_min", "value_max", "received_at"]
    sensor, metric, start, samples, total, low, high, received = (quote(meta.get_field(n).column) for n in names)
    least, greatest = ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")

    def pick(column: str, same: str) -> str:
        """`column` of a newer minute, `same` for the same minute, the stored value for an older one."""
        return (
            f"{column} = CASE WHEN EXCLUDED.{start} > {table}.{start} THEN EXCLUDED.{column} "
            f"WHEN EXCLUDED.{start} = {table}.{start} THEN {same} ELSE {table}.{column} END, "
        )

    return (
        f"INSERT INTO {table} ({sensor}, {metric}, {start}, {samples}, {total}, {low}, {high}, {received}) "
        f"{source} "
        f"ON CONFLICT ({sensor}, {metric}) DO UPDATE SET "
        + pick(samples, f"{table}.{samples} + EXCLUDED.{samples}")
        + pick(total, f"{table}.{total} + EXCLUDED.{total}")
        + pick(low, f"{least}({table}.{low}, EXCLUDED.{low})")
        + pick(high, f"{greatest}({table}.{high}, EXCLUDED.{high})")
        + pick(received, f"{greatest}({table}.{received}, EXCLUDED.{received})")
        + f"{start} = {greatest}({table}.{start}, EXCLUDED.{start})"
    )


def _current_from_merge_table() -> str:
    """The newest minute of each sensor and metric in the merge table, as CurrentReading rows.

    Its newest sample arrived at the sensor's last report (last_seen, refreshed in this
    transaction), or by the end of its newest minute if that is earlier (a metric the board
    stopped sending).
    """
    sensor_table = connection.ops.quote_name(Sensor._meta.db_table)
    last_seen = connection.ops.quote_name(Sensor._meta.get_field("last_seen").column)
    least = "MIN" if connection.vendor == "sqlite" else "LEAST"
    end = _moment("m.start + 60")
    return (
        f"SELECT m.sensor, m.metric, {_moment('m.start')}, m.samples, m.value_sum, m.value_min, m.value_max, "
        f"{least}(COALESCE(s.{last_seen}, {end}), {end}) "
        "FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor, metric ORDER BY start DESC) AS newest "
        f"FROM {MERGE_TABLE}) AS m JOIN {sensor_table} AS s ON s.id = m.sensor WHERE m.newest = 1"
    )


def merge_live(sensor_ids: dict[str, int], batch: Batch) -> None:
    """Overwrite the watched sensors' newest samples (LiveReading) with the batch's, where newer."""
    if not batch.live:
        return
    meta = LiveReading._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["sensor", "metric", "value", "received_at", "minute", "samples"]
    sensor, metric, value, received, minute, samples = (quote(meta.get_field(name).column) for name in names)
    moment = meta.get_field("received_at")
    rows = [
        (
            sensor_ids[mac],
            name,
            live.value,
            moment.get_db_prep_value(_utc(live.received_at), connection),
            moment.get_db_prep_value(_utc(live.minute), connection),
            live.samples,
        )
        for (mac, name), live in batch.live.items()
        if mac in sensor_ids
    ]
    _execute_values(
        lambda values: (
            f"INSERT INTO {table} ({sensor}, {metric}, {value}, {received}, {minute}, {samples}) {values} "
            f"ON CONFLICT ({sensor}, {metric}) DO UPDATE SET {value} = EXCLUDED.{value}, "
            f"{received} = EXCLUDED.{received}, {minute} = EXCLUDED.{minute}, {samples} = EXCLUDED.{samples} "
            f"WHERE EXCLUDED.{received} >= {table}.{received}"
        ),
        rows,
        len(names),
    )


def watched_macs() -> list[str]:
    """Device ids of the sensors someone wants live values of (Sensor.live_until in the future)."""
    try:
        return list(Sensor.objects.filter(live_until__gt=timezone.now()).values_list("device_id", flat=True))
    except DatabaseError:
        connection.close()
        raise


def record_discovered(devices: set[str]) -> None:
    """Register devices known from a retained message only: no first or last seen, no readings."""
    if devices:
        Sensor.objects.bulk_create(
            [Sensor(device_id=device, source=source_of(device)) for device in sorted(devices)],
            batch_size=ROWS_PER_STATEMENT,
            ignore_conflicts=True,
        )


def record_availability(availability: dict[str, tuple[float, bool]]) -> None:
    """A device's last will ("offline") sets Sensor.offline_since, its "online" clears it; unknown devices are skipped.

    An "offline" keeps the earliest time of an outage already recorded (a broker repeating a retained will)."""
    for device_id, (when, online) in availability.items():
        sensors = Sensor.objects.filter(device_id=device_id)
        if online:
            sensors.exclude(offline_since=None).update(offline_since=None)
        else:
            sensors.filter(offline_since=None).update(offline_since=_utc(when))


def record_refused(refused: dict[str, RefusedSeen]) -> None:
    """Add the batch's refused devices to RefusedSensor (lines counted up, the last time and address kept)."""
    if not refused:
        return
    meta = RefusedSensor._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["device_id", "reason", "lines", "first_refused", "last_refused", "last_peer"]
    mac, reason, lines, first, last, peer = (quote(meta.get_field(name).column) for name in names)
    moment = meta.get_field("last_refused")
    rows = [
        (
            address,
            seen.reason,
            seen.lines,
            moment.get_db_prep_value(_utc(seen.first), connection),
            moment.get_db_prep_value(_utc(seen.last), connection),
            seen.peer or None,
        )
        for address, seen in refused.items()
    ]
    _execute_values(
        lambda values: (
            f"INSERT INTO {table} ({mac}, {reason}, {lines}, {first}, {last}, {peer}) {values} "
            f"ON CONFLICT ({mac}) DO UPDATE SET {lines} = {table}.{lines} + EXCLUDED.{lines}, "
            f"{reason} = EXCLUDED.{reason}, {last} = EXCLUDED.{last}, {peer} = EXCLUDED.{peer}"
        ),
        rows,
        len(names),
    )


def stored_metrics() -> dict[str, set[str]]:
    """Device id -> the metrics stored for it (one current-value row each), to seed the per-sensor metric limit."""
    known: dict[str, set[str]] = {}
    for mac, metric in CurrentReading.objects.values_list("sensor__device_id", "metric").iterator(chunk_size=5000):
        known.setdefault(mac, set()).add(metric)
    return known


def registered_macs() -> list[str]:
    """Device ids of the sensors in the database (for COLLECTOR_UNKNOWN_SENSORS=reject)."""
    try:
        return list(Sensor.objects.values_list("device_id", flat=True))
    except DatabaseError:
        connection.close()
        raise
