"""Test data as the collector would have stored it: minute rows plus the hourly and daily rollups of them."""

from __future__ import annotations

from collections.abc import Iterable

from sensors.aggregator import Bucket, coarsen
from sensors.models import DailyReading, HourlyReading, Reading
from sensors.storage import merge_readings


def store_minutes(readings: Iterable[Reading]) -> list[Reading]:
    """Insert minute rows and merge them into the rollups through the collector's own merge."""
    rows = Reading.objects.bulk_create(list(readings))
    buckets = {}
    for row in rows:
        bucket = Bucket(row.value_min)
        bucket.count, bucket.total, bucket.high = row.samples, row.value_sum, row.value_max
        buckets[(row.sensor_id, row.metric, int(row.start.timestamp()))] = bucket
    ids = {row.sensor_id: row.sensor_id for row in rows}
    for model in (HourlyReading, DailyReading):
        merge_readings(ids, coarsen(buckets.items(), model.SECONDS).items(), model)
    return rows
