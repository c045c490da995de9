"""Flush: writing 30,000 minute buckets (10,000 boards x 3 metrics) with sensors.storage.write_batch.

Target: under 1 s on SQLite and on PostgreSQL.

    .venv/bin/python bench/flush.py [--repeat 5]                       # a fresh SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/flush.py

The batch is built by sensors.ingest.aggregator (as the collector does: 10,000 boards' lines over one
minute). Two cases, best and median of --repeat each: "new minute" (every row an INSERT; the
sensors already registered, as in steady state) and "same minute" (every row merged into an
existing one, as each flush of the still-open minute does). Only this benchmark's rows are
touched on PostgreSQL: MACs 02:be:7c:xx:xx:xx and minutes in the year 2001, deleted at the end.
Whatever write_batch does is measured: the sensor refresh, the minute, hourly, daily and
current-value merges, the live values and the commit.

Reference, measured in the same run (the machine's speed varies up to 2x from day to day): the
same 30,000 rows inserted by the bare driver (DB-API executemany) into a temporary table without
an index, committed. "flush / reference" is how many bare inserts a flush costs, which moves
less than the seconds from one machine or day to the next.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import ROOT, Database, machine, result_line

TARGET_SECONDS = 1.0
BASE_MINUTE = 978_307_200  # 2001-01-01T00:00:00Z


def build_batch(boards: int, minute: int):
    from sensors.ingest.aggregator import Aggregator
    from sensors.ingest.simulator import make_fleet

    aggregator = Aggregator()
    fleet = make_fleet(boards)
    for second in range(0, 60, 2):  # each board's 30 lines of the minute
        for board in fleet:
            line = board.line().decode().rstrip("\n")
            parts = dict(part.split(": ", 1) if ": " in part else part.split(" ", 1) for part in line.split("; "))
            values = (
                ("soil_moisture", float(parts["Soil"])),
                ("air_temperature", float(parts["temp"])),
                ("humidity", float(parts["hum"])),
            )
            mac = "02:be:7c" + board.mac[8:]
            aggregator.add(mac, values, minute + second + 0.5, "127.0.0.1")
    return aggregator.drain()


def bare_insert(batch) -> float:
    """Seconds the driver's executemany takes to insert and commit the batch's rows into a table without an index."""
    from django.db import connection, transaction

    rows = [
        (number, metric, start, b.count, b.total, b.low, b.high)
        for number, ((_, metric, start), b) in enumerate(batch.buckets.items())
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS bench_reference (sensor bigint, metric text, start bigint, "
            "samples integer, value_sum double precision, value_min double precision, value_max double precision)"
        )
        cursor.execute("DELETE FROM bench_reference")
        started = time.perf_counter()
        with transaction.atomic():
            cursor.executemany("INSERT INTO bench_reference VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL")
    if url and not url.startswith(("postgres://", "postgresql://")):
        url = None  # only PostgreSQL is taken from the environment; SQLite is always a fresh file
    db = Database(url)  # migrates
    os.environ.update(db.env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from sensors import storage
    from sensors.models import Reading, Sensor

    vendor = connection.vendor
    version = (
        f"SQLite {connection.Database.sqlite_version}"
        if vendor == "sqlite"
        else f"PostgreSQL {connection.cursor().connection.info.server_version}"
    )
    print(f"flush: {args.boards} boards x 3 metrics, {version}; {machine()}")

    def cleanup() -> None:
        Reading.objects.filter(sensor__device_id__startswith="02:be:7c").delete()
        Sensor.objects.filter(device_id__startswith="02:be:7c").delete()

    try:
        cleanup()
        storage.write_batch(build_batch(args.boards, BASE_MINUTE))  # sensors registered, one minute stored
        new_minute, same_minute = [], []
        for run in range(args.repeat):
            batch = build_batch(args.boards, BASE_MINUTE + 60 * (run + 1))
            started = time.perf_counter()
            rows = storage.write_batch(batch)
            new_minute.append(time.perf_counter() - started)
            assert rows == args.boards * 3, rows
            batch = build_batch(args.boards, BASE_MINUTE + 60 * (run + 1))
            started = time.perf_counter()
            storage.write_batch(batch)
            same_minute.append(time.perf_counter() - started)
        reference = [bare_insert(batch) for _ in range(args.repeat)]
        stored = Reading.objects.filter(sensor__device_id__startswith="02:be:7c").count()
        assert stored == args.boards * 3 * (args.repeat + 1), stored
    finally:
        cleanup()
        db.remove()
    worst_best = max(min(new_minute), min(same_minute))
    base = statistics.median(reference)
    result_line(
        f"flush ({vendor})",
        worst_best < TARGET_SECONDS,
        f"{args.boards * 3:,} buckets: new minute best {min(new_minute):.3f} s median "
        f"{statistics.median(new_minute):.3f} s ({statistics.median(new_minute) / base:.1f}x reference); "
        f"same minute (merge) best {min(same_minute):.3f} s median {statistics.median(same_minute):.3f} s "
        f"({statistics.median(same_minute) / base:.1f}x reference); reference (bare executemany) median "
        f"{base:.3f} s (target < {TARGET_SECONDS:g} s, best of {args.repeat})",
    )
    return 0 if worst_best < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
