"""Hourly and daily rollups: exact across late flushes, restarts and the retention purge; read transparently."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.ingest.aggregator import Batch
from sensors.models import DailyReading, HourlyReading, Reading, Sensor
from sensors.retention import purge_expired_minutes
from sensors.storage import write_batch
from sensors.web.history import sensor_series, source_for
from tests.seed import assert_rollups_match_minutes, stored_rollups

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DAY = 86400
MACS = ["5c:cf:7f:00:00:01", "5c:cf:7f:00:00:02"]


def batch_of(samples: list[tuple[str, str, int, float]]) -> Batch:
    batch = Batch()
    for mac, metric, timestamp, value in samples:
        batch.add(mac, metric, timestamp - timestamp % 60, value)
        batch.seen(mac, timestamp, "192.0.2.7")
    return batch


# Samples over three UTC days (so hours and days both have several minutes and several rows).
sample = st.tuples(
    st.sampled_from(MACS),
    st.sampled_from(["air_temperature", "humidity"]),
    st.integers(int(NOW.timestamp()) - 3 * DAY, int(NOW.timestamp()) - 1),
    st.floats(-40, 100, allow_nan=False).map(lambda value: round(value, 1)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(sample, min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    reverse=st.booleans(),
)
def test_rollups_equal_their_minutes_however_the_samples_were_batched(samples, cuts, reverse):
    """Any split into flushes (a restart or a second collector), written in any order (a late flush)."""
    edges = sorted({0, len(samples), *(cut for cut in cuts if cut < len(samples))})
    batches = [batch_of(samples[a:b]) for a, b in itertools.pairwise(edges)]
    with transaction.atomic():
        for batch in reversed(batches) if reverse else batches:
            write_batch(batch)
        assert_rollups_match_minutes()
        assert sum(HourlyReading.objects.values_list("samples", flat=True)) == len(samples)
        assert sum(DailyReading.objects.values_list("samples", flat=True)) == len(samples)
        transaction.set_rollback(True)


def test_purging_minutes_leaves_the_rollups_and_old_history_untouched():
    start = int((NOW - timedelta(days=40)).timestamp())
    # One sample every 10 minutes for 20 days, starting 40 days ago: half of it older than 30 days.
    write_batch(batch_of([(MACS[0], "humidity", start + i * 600, 40.0 + i % 7) for i in range(20 * 144)]))
    hours_before, days_before = stored_rollups(HourlyReading), stored_rollups(DailyReading)
    assert_rollups_match_minutes()

    deleted = purge_expired_minutes(30, now=NOW, chunk=100)  # small chunks: many rounds

    cutoff = NOW - timedelta(days=30)
    assert deleted == 10 * 144
    assert not Reading.objects.filter(start__lt=cutoff).exists()
    assert Reading.objects.count() == 10 * 144
    assert stored_rollups(HourlyReading) == hours_before
    assert stored_rollups(DailyReading) == days_before
    # A week 35 days ago still charts, from the hours, with every sample.
    sensor = Sensor.objects.get(device_id=MACS[0])
    week = (NOW - timedelta(days=38), NOW - timedelta(days=31))
    series = sensor_series(sensor, "humidity", *week, max_points=1000)
    assert series.resolution == "hour"
    assert series.samples == 7 * 144
    assert [point.time.minute for point in series.points] == [0] * len(series.points)


def test_retention_zero_keeps_every_minute(settings):
    write_batch(batch_of([(MACS[0], "humidity", int((NOW - timedelta(days=400)).timestamp()), 50.0)]))
    settings.MINUTE_RETENTION_DAYS = 0
    call_command("prune_readings", stdout=(out := io.StringIO()))  # --days defaults to the setting
    assert "retention is off" in out.getvalue()
    assert Reading.kept_since() is None
    assert Reading.objects.count() == 1
    settings.MINUTE_RETENTION_DAYS = 30  # the same minute under the default retention is deleted
    call_command("prune_readings", stdout=(out := io.StringIO()))
    assert "deleted 1 minute rows" in out.getvalue()
    assert Reading.objects.count() == 0


def test_a_purge_stops_between_two_chunks_once_a_stop_is_requested():
    start = int((NOW - timedelta(days=40)).timestamp())
    write_batch(batch_of([(MACS[0], "humidity", start + i * 60, 40.0) for i in range(50)]))
    chunks = []

    def stopping() -> bool:
        chunks.append(Reading.objects.count())
        return len(chunks) > 2  # a stop arrives after two chunks

    assert purge_expired_minutes(30, now=NOW, chunk=10, stopping=stopping) == 20
    assert Reading.objects.count() == 30  # the rest waits for the next run
    assert purge_expired_minutes(30, now=NOW, chunk=10) == 30


def test_prune_readings_command_reports_and_deletes_only_expired_minutes():
    now = datetime.now(UTC)
    old, recent = int((now - timedelta(days=31)).timestamp()), int((now - timedelta(days=1)).timestamp())
    write_batch(batch_of([(MACS[0], "humidity", old, 50.0), (MACS[0], "humidity", recent, 60.0)]))
    out = io.StringIO()
    call_command("prune_readings", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 1 minute rows before")
    assert Reading.objects.count() == 2
    call_command("prune_readings", stdout=out)
    assert "deleted 1 minute rows" in out.getvalue()
    assert list(Reading.objects.values_list("value_sum", flat=True)) == [60.0]
    assert HourlyReading.objects.count() == 2


@pytest.mark.parametrize(
    ("age", "length", "points", "table", "step"),
    [
        (timedelta(0), timedelta(hours=1), 1000, "minute", 60),
        (timedelta(0), timedelta(hours=24), 1000, "minute", 120),
        (timedelta(0), timedelta(days=30), 1000, "hour", 3600),
        (timedelta(0), timedelta(days=365), 1000, "hour", 12 * 3600),
        (timedelta(0), timedelta(days=365), 300, "day", 2 * DAY),
        (timedelta(days=60), timedelta(hours=1), 1000, "hour", 3600),  # minutes purged: the finest left is hours
        (timedelta(days=25), timedelta(days=7), 1000, "hour", 3600),  # starts before the minutes kept
    ],
)
def test_history_reads_the_coarsest_table_that_fits_the_step(age, length, points, table, step):
    end = NOW - age
    model, chosen = source_for(end - length, end, points, now=NOW)
    assert (model.RESOLUTION, chosen) == (table, step)
    assert length.total_seconds() / chosen <= points


def test_a_year_chart_from_daily_rows_equals_the_same_chart_from_minutes(settings):
    settings.MINUTE_RETENTION_DAYS = 0  # keep minutes, so both ways of computing can be compared
    base = int((NOW - timedelta(days=20)).timestamp())
    write_batch(batch_of([(MACS[1], "air_temperature", base + i * 900, float(i % 13)) for i in range(20 * 96)]))
    sensor = Sensor.objects.get(device_id=MACS[1])
    year = (NOW - timedelta(days=365), NOW)
    from_days = sensor_series(sensor, "air_temperature", *year, max_points=400)
    assert (from_days.resolution, from_days.step_seconds) == ("day", DAY)
    # The same step computed from the minute rows directly:
    by_day: dict[int, list[float]] = {}
    for row in Reading.objects.filter(sensor=sensor):
        epoch = int(row.start.timestamp())
        by_day.setdefault(epoch - epoch % DAY, []).append(row.value_sum / row.samples)
    assert [int(p.time.timestamp()) for p in from_days.points] == sorted(by_day)
    for point in from_days.points:
        values = by_day[int(point.time.timestamp())]
        assert point.samples == len(values)
        assert point.mean == pytest.approx(sum(values) / len(values))
        assert (point.low, point.high) == (min(values), max(values))


def test_export_resolution_hour_gives_one_row_per_hour_with_exact_counts():
    base = int(datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp())
    write_batch(batch_of([(MACS[0], "humidity", base + i * 30, 50.0 + i % 3) for i in range(240)]))  # 2 hours
    out = io.StringIO()
    call_command("export_readings", "--resolution", "hour", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[1:] == [
        "5c:cf:7f:00:00:01,,,humidity,2026-11-20T10:00:00Z,120,51.0,50.0,52.0",
        "5c:cf:7f:00:00:01,,,humidity,2026-11-20T11:00:00Z,120,51.0,50.0,52.0",
    ]
    call_command("export_readings", "--resolution", "day", stdout=(day := io.StringIO()))
    assert day.getvalue().splitlines()[1:] == ["5c:cf:7f:00:00:01,,,humidity,2026-11-20T00:00:00Z,240,51.0,50.0,52.0"]


@pytest.mark.django_db(transaction=True)
def test_upgrading_rolls_up_the_minutes_stored_before_rollups_existed():
    executor = MigrationExecutor(connection)
    executor.migrate([("sensors", "0002_placements_and_calibration")])
    old = executor.loader.project_state([("sensors", "0002_placements_and_calibration")]).apps
    sensor = old.get_model("sensors", "Sensor").objects.create(mac=MACS[0])
    minute = datetime(2026, 11, 23, 23, 58, tzinfo=UTC)
    old.get_model("sensors", "Reading").objects.bulk_create(
        old.get_model("sensors", "Reading")(
            sensor=sensor,
            metric="humidity",
            start=minute + timedelta(minutes=i),
            samples=30,
            value_sum=30.0 * (50 + i),
            value_min=49.0 + i,
            value_max=51.0 + i,
        )
        for i in range(4)  # 23:58 and 23:59 on one day, 00:00 and 00:01 on the next
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert_rollups_match_minutes()
    assert sorted(DailyReading.objects.values_list("samples", flat=True)) == [60, 60]
    assert HourlyReading.objects.count() == 2


def test_page_csv_of_a_range_older_than_the_retention_comes_from_the_hours(admin_client):
    day = (datetime.now(UTC) - timedelta(days=45)).replace(hour=0, minute=0, second=0, microsecond=0)
    first = int(day.timestamp()) + 10 * 3600
    write_batch(batch_of([(MACS[0], "humidity", first + i * 60, 50.0) for i in range(90)]))  # 10:00-11:30
    purge_expired_minutes(30)
    url = f"/sensors/{MACS[0]}/readings.csv"
    window = {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    hours = admin_client.get(url, window).getvalue().decode().splitlines()[1:]
    assert [row.split(",")[4:6] for row in hours] == [
        [f"{day:%Y-%m-%d}T10:00:00Z", "60"],
        [f"{day:%Y-%m-%d}T11:00:00Z", "30"],
    ]
    days = admin_client.get(url, {**window, "resolution": "day"}).getvalue().decode().splitlines()[1:]
    assert [row.split(",")[4:6] for row in days] == [[f"{day:%Y-%m-%d}T00:00:00Z", "90"]]
    assert admin_client.get(url, {**window, "resolution": "week"}).status_code == 400
