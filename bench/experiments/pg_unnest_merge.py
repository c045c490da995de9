"""Experiment for the storage owner, not used by the collector: the flush figure on PostgreSQL with
the reading merge sent as 7 arrays through unnest() instead of 500-row VALUES lists.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/experiments/pg_unnest_merge.py

Django's psycopg cursors bind client-side: psycopg parses each 3,500-placeholder statement and
quotes every parameter in Python, which is most of write_batch's time on PostgreSQL (see
docs/benchmarks.md). Same rows, same merge; only this benchmark's rows are touched.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")


def main() -> None:
    import django

    django.setup()
    from django.db import connection, transaction
    from flush import BASE_MINUTE, build_batch

    from sensors import storage
    from sensors.models import Reading, Sensor

    def cleanup() -> None:
        Reading.objects.filter(sensor__device_id__startswith="02:be:7c").delete()
        Sensor.objects.filter(device_id__startswith="02:be:7c").delete()

    table = Reading._meta.db_table
    sql = (
        f"INSERT INTO {table} (sensor_id, metric, start, samples, value_sum, value_min, value_max) "
        "SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::timestamptz[], %s::int[], "
        "%s::float8[], %s::float8[], %s::float8[]) "
        f"ON CONFLICT (sensor_id, metric, start) DO UPDATE SET samples = {table}.samples + EXCLUDED.samples, "
        f"value_sum = {table}.value_sum + EXCLUDED.value_sum, "
        f"value_min = LEAST({table}.value_min, EXCLUDED.value_min), "
        f"value_max = GREATEST({table}.value_max, EXCLUDED.value_max)"
    )
    cleanup()
    try:
        storage.write_batch(build_batch(10_000, BASE_MINUTE))
        for run in range(3):
            batch = build_batch(10_000, BASE_MINUTE + 60 * (run + 1))
            started = time.perf_counter()
            with transaction.atomic():
                ids = storage.upsert_sensors(batch)
                sensors_done = time.perf_counter()
                columns: list[list] = [[] for _ in range(7)]
                starts: dict[int, datetime] = {}
                for (mac, metric, minute), bucket in batch.buckets.items():
                    start = starts.get(minute) or starts.setdefault(minute, datetime.fromtimestamp(minute, tz=UTC))
                    row = (ids[mac], metric, start, bucket.count, bucket.total, bucket.low, bucket.high)
                    for column, value in zip(columns, row, strict=True):
                        column.append(value)
                with connection.cursor() as cursor:
                    cursor.execute(sql, columns)
            done = time.perf_counter()
            print(
                f"sensors (storage.upsert_sensors) {sensors_done - started:.3f} s, readings via unnest "
                f"{done - sensors_done:.3f} s, total {done - started:.3f} s"
            )
    finally:
        cleanup()


if __name__ == "__main__":
    main()
