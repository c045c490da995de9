"""Test data as the collector would have stored it: minute rows plus the hourly and daily rollups of them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pytest

from sensors.ingest.aggregator import Bucket
from sensors.models import DailyReading, HourlyReading, Reading, ReadingFields, Sensor
from sensors.storage import ROLLUPS, merge_buckets


def one_sample(sensor: Sensor, metric: str, start: datetime, value: float) -> Reading:
    """A minute row holding a single sample of `value` (its mean, min and max)."""
    return Reading(
        sensor=sensor, metric=metric, start=start, samples=1, value_sum=value, value_min=value, value_max=value
    )


def store_minutes(readings: Iterable[Reading]) -> list[Reading]:
    """Insert minute rows and merge them into the rollups and the current values through the collector's own merge."""
    rows = Reading.objects.bulk_create(list(readings))
    buckets = {}
    for row in rows:
        bucket = Bucket(row.value_min)
        bucket.count, bucket.total, bucket.high = row.samples, row.value_sum, row.value_max
        buckets[(row.sensor_id, row.metric, int(row.start.timestamp()))] = bucket
    ids = {row.sensor_id: row.sensor_id for row in rows}
    merge_buckets(ids, buckets.items(), into=ROLLUPS)
    return rows


def rollups_of_minutes(model: type[ReadingFields]) -> dict[tuple[int, str, int], tuple[int, float, float, float]]:
    """What `model`'s rows must hold: the stored minute rows re-added per interval, computed in Python."""
    expected: dict[tuple[int, str, int], list] = {}
    for row in Reading.objects.all():
        epoch = int(row.start.timestamp())
        key = (row.sensor_id, row.metric, epoch - epoch % model.SECONDS)
        mine = expected.setdefault(key, [0, 0.0, row.value_min, row.value_max])
        mine[0] += row.samples
        mine[1] += row.value_sum
        mine[2] = min(mine[2], row.value_min)
        mine[3] = max(mine[3], row.value_max)
    return {key: tuple(values) for key, values in expected.items()}


def stored_rollups(model: type[ReadingFields]) -> dict[tuple[int, str, int], tuple[int, float, float, float]]:
    return {
        (row.sensor_id, row.metric, int(row.start.timestamp())): (
            row.samples,
            row.value_sum,
            row.value_min,
            row.value_max,
        )
        for row in model.objects.all()
    }


def assert_rollups_match_minutes() -> None:
    """Hourly and daily rows hold exactly the samples of their minute rows (sums up to float rounding)."""
    for model in (HourlyReading, DailyReading):
        expected, stored = rollups_of_minutes(model), stored_rollups(model)
        assert stored.keys() == expected.keys(), model.__name__
        for key, (samples, total, low, high) in expected.items():
            assert stored[key] == (samples, pytest.approx(total, rel=1e-12), low, high), (model.__name__, key)
