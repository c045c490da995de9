"""Closed days' hourly rows rewritten side by side, so a year's chart reads hundreds of table pages, not thousands.

The collector merges every sensor's current hour on every flush, so the rows of one hour are
created together and one sensor-metric's 8,760 hours of a year lie on ~8,340 different table
pages. SQLite answers a chart from its covering index (migration 0010); PostgreSQL has to visit
each of those pages (17-47 ms of the 1 y chart's query at 200 sensors, docs/benchmarks.md).
A covering index on PostgreSQL would end the flush's in-page (HOT) updates of the current hour
and double the flush, so instead, once a UTC day and the day after it are over, the day's hourly
rows are deleted and inserted again in (sensor, metric, start) order: a sensor-metric's 24
hours of that day then share one page, and a year's chart reads ~500 pages.

Each day is one short transaction, with the hourly table locked against the collector's merges
(a late flush into that day waits for it, then adds to the rewritten rows; on SQLite the
transaction's IMMEDIATE lock does the same). `OrderedDay` records the days done, checked after
the lock so two collectors never redo a day. On PostgreSQL `clean_indexes` then runs a
`VACUUM (INDEX_CLEANUP ON)` of the table: without it the indexes keep pointing at the old rows'
pages, and a chart would still visit them. The rows and their values never change, only where
they lie; the retention thread (sensors.retention) runs this every hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from .models import HourlyReading, OrderedDay

# A day is laid out once the next day is over too: a flush delayed by a short outage lands first.
GRACE_DAYS = 1
COLUMNS = ("sensor_id", "metric", "start", "samples", "value_sum", "value_min", "value_max")
SCRATCH = "sensors_ordered_hours"


def _never() -> bool:
    return False


def days_to_order(now: datetime | None = None) -> list[date]:
    """Closed days holding hourly rows that are not laid out yet, oldest first."""
    first = HourlyReading.objects.aggregate(first=Min("start"))["first"]
    if first is None:
        return []
    last = (now or timezone.now()).astimezone(UTC).date() - timedelta(days=1 + GRACE_DAYS)
    day = first.astimezone(UTC).date()
    done = set(OrderedDay.objects.filter(day__gte=day, day__lte=last).values_list("day", flat=True))
    days = []
    while day <= last:
        if day not in done:
            days.append(day)
        day += timedelta(days=1)
    return days


def order_day(day: date, now: datetime | None = None) -> int | None:
    """Rewrite `day`'s hourly rows in (sensor, metric, start) order; return how many, None if done before."""
    table = connection.ops.quote_name(HourlyReading._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(column) for column in COLUMNS)
    start = datetime.combine(day, time(), UTC)
    bounds = [connection.ops.adapt_datetimefield_value(moment) for moment in (start, start + timedelta(days=1))]
    where = f"{connection.ops.quote_name('start')} >= %s AND {connection.ops.quote_name('start')} < %s"
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Readers go on; the collector's merges wait the few hundred milliseconds this takes.
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        if OrderedDay.objects.filter(day=day).exists():
            return None
        cursor.execute(f"CREATE TEMPORARY TABLE {SCRATCH} AS SELECT {columns} FROM {table} WHERE {where}", bounds)
        cursor.execute(f"DELETE FROM {table} WHERE {where}", bounds)
        rows = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {SCRATCH} "
            f"ORDER BY {connection.ops.quote_name('sensor_id')}, {connection.ops.quote_name('metric')}, "
            f"{connection.ops.quote_name('start')}"
        )
        cursor.execute(f"DROP TABLE {SCRATCH}")
        OrderedDay.objects.create(day=day, rows=rows, ordered_at=now or timezone.now())
    return rows


def order_closed_days(now: datetime | None = None, stopping: Callable[[], bool] = _never) -> tuple[int, int]:
    """Lay out every closed day not done yet; return the days that held rows, and the rows.

    Stops between two days once `stopping()` is true: the rest goes at the next run.
    The first run after an upgrade does a year at once (about 1.5 min at 200 sensors on
    PostgreSQL, a day per transaction); later runs do the one day that closed.
    """
    days = rows = 0
    for day in days_to_order(now):
        if stopping():
            break
        moved = order_day(day, now)
        if moved:
            days, rows = days + 1, rows + moved
    return days, rows


def clean_indexes() -> None:
    """After a layout, drop the index entries of the old copies of the rows (PostgreSQL; no-op on SQLite).

    Plain VACUUM skips the indexes when dead rows sit on under 2 % of the pages, which one day's
    rows always do; INDEX_CLEANUP ON makes it remove them. VACUUM cannot run in a transaction.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (INDEX_CLEANUP ON) {connection.ops.quote_name(HourlyReading._meta.db_table)}")
