"""History benchmark: a year of readings for 50 sensors x 3 metrics, chart queries for 1 h .. 1 y.

    .venv/bin/python bench/history.py                  # SQLite file var/bench-history.sqlite3
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/history.py

Seeds the database directly (not through the collector: a year at 1 line / 2 s
would take a year) in the state the default retention leaves it: minute rows
for the last MINUTE_RETENTION_DAYS, hourly and daily rollups for the whole year,
each rollup equal to the merge of its minutes. Then times `sensor_series`, the
query behind every chart and the history API, for random sensors and metrics
over each range, and prints p50/p95 per range and PASS/FAIL against the target
(p95 under 50 ms, at most 1,000 points). On SQLite it also reports the bytes a
sensor-year costs on disk.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")
os.environ.setdefault("SECRET_KEY", __import__("secrets").token_urlsafe(50))  # DEBUG is off: a key is required
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench-history.sqlite3'}")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from sensors.models import DailyReading, HourlyReading, Reading, Sensor  # noqa: E402
from sensors.web.history import sensor_series  # noqa: E402

SENSORS = 50
METRICS = {"air_temperature": (18.0, 8.0), "humidity": (60.0, 20.0), "soil_moisture": (550.0, 120.0)}
SAMPLES_PER_MINUTE = 30  # one line every 2 s
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
RANGES |= {"30d": timedelta(days=30), "1y": timedelta(days=365)}
P95_TARGET_MS = 50.0
MAX_POINTS = 1000
COLUMNS = "sensor_id, metric, start, samples, value_sum, value_min, value_max"


def level(metric: str, sensor: int, hour: int) -> float:
    """A plausible value: a daily cycle and a slow seasonal drift around each metric's centre."""
    centre, swing = METRICS[metric]
    return centre + swing * (0.6 * math.sin(2 * math.pi * hour / 24) + 0.4 * math.sin(2 * math.pi * hour / 8760))


def insert(model, rows: list[tuple]) -> None:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)


def seed(end: datetime, minute_days: int) -> None:
    """Hours for a year; minutes (and the hours built from them) for the last `minute_days`."""
    started = time.perf_counter()
    hours = 365 * 24
    first_hour = end - timedelta(hours=hours)
    minutes_from = end - timedelta(days=minute_days)
    sensor_ids = [
        Sensor.objects.create(device_id=f"5c:cf:7f:be:00:{index:02x}", name=f"Bench {index}").pk
        for index in range(SENSORS)
    ]
    start_field = Reading._meta.get_field("start")
    rng = random.Random(7)
    minute_rows = 0
    for day in range(365):
        hour_rows, day_totals, minutes = [], {}, []
        for hour_in_day in range(24):
            hour_index = day * 24 + hour_in_day
            hour_start = first_hour + timedelta(hours=hour_index)
            hour_db = start_field.get_db_prep_value(hour_start, connection)
            minute_dbs = None
            if hour_start >= minutes_from:
                minute_dbs = [
                    start_field.get_db_prep_value(hour_start + timedelta(minutes=m), connection) for m in range(60)
                ]
            for sensor, sensor_id in enumerate(sensor_ids):
                for metric in METRICS:
                    centre = level(metric, sensor, hour_index) + sensor * 0.05
                    if minute_dbs is None:  # older than the retention: only the rollup remains
                        count = 60 * SAMPLES_PER_MINUTE
                        total, low, high = centre * count, centre - 1.5, centre + 1.5
                    else:
                        count, total, low, high = 0, 0.0, math.inf, -math.inf
                        for minute_db in minute_dbs:
                            mean = centre + rng.uniform(-1.0, 1.0)
                            row = (sensor_id, metric, minute_db, SAMPLES_PER_MINUTE, mean * SAMPLES_PER_MINUTE)
                            minutes.append((*row, mean - 0.5, mean + 0.5))
                            count += SAMPLES_PER_MINUTE
                            total += mean * SAMPLES_PER_MINUTE
                            low, high = min(low, mean - 0.5), max(high, mean + 0.5)
                    hour_rows.append((sensor_id, metric, hour_db, count, total, low, high))
                    mine = day_totals.setdefault((sensor_id, metric), [0, 0.0, math.inf, -math.inf])
                    mine[0] += count
                    mine[1] += total
                    mine[2], mine[3] = min(mine[2], low), max(mine[3], high)
        day_db = start_field.get_db_prep_value(first_hour + timedelta(days=day), connection)
        with transaction.atomic():
            insert(HourlyReading, hour_rows)
            insert(DailyReading, [(sid, metric, day_db, *values) for (sid, metric), values in day_totals.items()])
            if minutes:
                insert(Reading, minutes)
        minute_rows += len(minutes)
    print(
        f"seeded {SENSORS} sensors x {len(METRICS)} metrics: {minute_rows} minute rows ({minute_days} days), "
        f"{HourlyReading.objects.count()} hourly, {DailyReading.objects.count()} daily "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def sqlite_bytes() -> tuple[int, dict[str, int]]:
    """The database file's size, and the bytes of each table with its indexes where SQLite can say."""
    path = Path(connection.settings_dict["NAME"])
    size = path.stat().st_size
    per_table: dict[str, int] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type IN ('table', 'index')")
            owner = dict((name, table) for table, name in cursor.fetchall())
            cursor.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            for name, used in cursor.fetchall():
                table = owner.get(name, name)
                per_table[table] = per_table.get(table, 0) + used
    except Exception:  # dbstat is a compile-time option
        pass
    return size, per_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200, help="queries per range (default %(default)s)")
    parser.add_argument("--reseed", action="store_true", help="empty the readings and seed again")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if args.reseed or not HourlyReading.objects.exists():
        for model in (Reading, HourlyReading, DailyReading, Sensor):
            model.objects.all().delete()
        seed(end, settings.MINUTE_RETENTION_DAYS)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    sensors = list(Sensor.objects.all())
    rng = random.Random(11)
    print(f"database: {connection.vendor}; {len(sensors)} sensors; {args.queries} queries per range", flush=True)
    failed = False
    all_times: list[float] = []
    now = datetime.now(UTC)
    for name, length in RANGES.items():
        times, points, tables = [], 0, set()
        for _ in range(args.queries):
            sensor, metric = rng.choice(sensors), rng.choice(list(METRICS))
            offset = timedelta(seconds=rng.uniform(0, 3600))  # ranges end anywhere in the last hour
            started = time.perf_counter()
            series = sensor_series(sensor, metric, now - offset - length, now - offset, MAX_POINTS)
            times.append((time.perf_counter() - started) * 1000)
            points = max(points, len(series.points))
            tables.add(series.resolution)
        p50, p95 = statistics.median(times), statistics.quantiles(times, n=20)[-1]
        all_times += times
        ok = p95 < P95_TARGET_MS and points <= MAX_POINTS
        failed |= not ok
        print(
            f"history {name:>3}: p50 {p50:6.1f} ms, p95 {p95:6.1f} ms, max points {points:4d}, "
            f"read from {'/'.join(sorted(tables))} rows -> {'PASS' if ok else 'FAIL'}"
        )
    overall = statistics.quantiles(all_times, n=20)[-1]
    print(f"history all ranges: p95 {overall:.1f} ms (target < {P95_TARGET_MS:.0f} ms, <= {MAX_POINTS} points)")
    if connection.vendor == "sqlite":
        size, per_table = sqlite_bytes()
        count = len(sensors)
        rollups = sum(per_table.get(model._meta.db_table, 0) for model in (HourlyReading, DailyReading))
        minutes = per_table.get(Reading._meta.db_table, 0)
        print(
            f"storage: {size / 1e6:.0f} MB file for {count} sensor-years = {size / count / 1e6:.1f} MB per sensor-year "
            f"(minutes kept {settings.MINUTE_RETENTION_DAYS} d: {minutes / count / 1e6:.1f} MB a sensor, steady; "
            f"hourly+daily rollups: {rollups / count / 1e6:.2f} MB a sensor per year, growing)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
