"""storage.write_batch: sensors registered, minutes merged (never overwritten), on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from sensors.ingest.aggregator import Batch
from sensors.models import CurrentReading, DailyReading, HourlyReading, Location, Reading, Sensor
from sensors.storage import ROWS_PER_STATEMENT, write_batch

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 10, 15, tzinfo=UTC).timestamp()
MAC = "5c:cf:7f:0a:1b:2c"


def batch(*samples: tuple[str, str, float, float], peer: str = "192.0.2.7") -> Batch:
    result = Batch()
    for mac, metric, timestamp, value in samples:
        result.add(mac, metric, int(timestamp // 60) * 60, value)
        result.seen(mac, timestamp, peer)
    return result


def test_first_batch_registers_the_sensor_and_stores_each_minute():
    rows = write_batch(batch((MAC, "humidity", T0, 40), (MAC, "humidity", T0 + 2, 44), (MAC, "humidity", T0 + 61, 50)))
    assert rows == 2
    sensor = Sensor.objects.get()
    assert (sensor.device_id, sensor.last_peer) == (MAC, "192.0.2.7")
    assert sensor.first_seen.timestamp() == T0
    assert sensor.last_seen.timestamp() == T0 + 61
    first, second = Reading.objects.order_by("start")
    assert (first.samples, first.value_sum, first.value_min, first.value_max, first.mean) == (2, 84, 40, 44, 42)
    assert first.start == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    assert (second.samples, second.value_sum) == (1, 50)


def test_a_later_batch_for_the_same_minute_adds_counts_and_widens_min_max():
    write_batch(batch((MAC, "air_temperature", T0, 20), (MAC, "air_temperature", T0 + 1, 22)))
    write_batch(batch((MAC, "air_temperature", T0 + 10, 18), (MAC, "air_temperature", T0 + 12, 21), peer="192.0.2.8"))
    reading = Reading.objects.get()
    assert (reading.samples, reading.value_sum, reading.value_min, reading.value_max) == (4, 81, 18, 22)
    sensor = Sensor.objects.get()
    assert sensor.first_seen.timestamp() == T0  # kept
    assert sensor.last_seen.timestamp() == T0 + 12
    assert sensor.last_peer == "192.0.2.8"


def test_a_named_and_placed_sensor_keeps_its_name_and_place():
    bench = Location.objects.create(name="North bench")
    Sensor.objects.create(device_id=MAC, name="Tomatoes", location=bench)
    write_batch(batch((MAC, "soil_moisture", T0, 512)))
    sensor = Sensor.objects.get()
    assert (sensor.name, sensor.location) == ("Tomatoes", bench)
    assert sensor.readings.get().samples == 1


def test_batches_larger_than_one_statement_are_written_whole():
    count = ROWS_PER_STATEMENT * 2 + 7
    macs = [f"5c:cf:7f:00:{i >> 8:02x}:{i & 255:02x}" for i in range(count)]
    rows = write_batch(batch(*[(mac, "humidity", T0, 50.0) for mac in macs]))
    assert rows == count
    assert Sensor.objects.count() == count
    assert Reading.objects.filter(samples=1).count() == count


def test_sqlite_built_with_the_old_999_variable_limit_still_takes_large_batches():
    from django.db import connection

    if connection.vendor == "sqlite":  # as SQLite before 3.32 (Django 5.2 supports 3.31)
        connection.ensure_connection()
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    assert write_batch(batch(*[(MAC, f"m{index}", T0, 1.0) for index in range(300)])) == 300
    assert Reading.objects.count() == 300


def test_a_failed_batch_leaves_nothing_half_written():
    macs = [f"5c:cf:7f:00:{i >> 8:02x}:{i & 255:02x}" for i in range(ROWS_PER_STATEMENT + 100)]
    broken = batch(*[(mac, "humidity", T0, 50.0) for mac in macs])
    # After more than one statement's worth of rows has gone into the merge table: no such sensor.
    broken.buckets[("ff:ff:ff:ff:ff:ff", "humidity", int(T0))] = next(iter(broken.buckets.values()))
    with pytest.raises(KeyError):
        write_batch(broken)
    assert Reading.objects.count() == 0
    assert Sensor.objects.count() == 0
    # The next batch on the same connection finds the merge table empty: each minute counted once.
    assert write_batch(batch(*[(mac, "humidity", T0, 50.0) for mac in macs])) == len(macs)
    assert set(Reading.objects.values_list("samples", flat=True)) == {1}
    assert set(HourlyReading.objects.values_list("samples", flat=True)) == {1}


def test_rows_the_orm_wrote_and_rows_the_merge_writes_are_the_same_rows():
    """The merge computes its times in SQL; they must meet the ORM's in the unique indexes, not sit beside them."""
    sensor = Sensor.objects.create(device_id=MAC)
    minute, hour = datetime(2026, 11, 24, 10, 15, tzinfo=UTC), datetime(2026, 11, 24, 10, tzinfo=UTC)
    fields = dict(sensor=sensor, metric="humidity", samples=2, value_sum=80.0, value_min=39.0, value_max=41.0)
    Reading.objects.create(start=minute, **fields)
    HourlyReading.objects.create(start=hour, **fields)
    DailyReading.objects.create(start=hour.replace(hour=0), **fields)
    write_batch(batch((MAC, "humidity", T0, 50.0)))
    for model in (Reading, HourlyReading, DailyReading):
        row = model.objects.get()
        assert (row.samples, row.value_sum, row.value_max) == (3, 130.0, 50.0), model.__name__


def test_a_batch_mixing_known_and_new_sensors_refreshes_the_known_and_registers_the_new():
    write_batch(batch((MAC, "humidity", T0, 40)))
    other = "5c:cf:7f:00:00:99"
    write_batch(batch((MAC, "humidity", T0 + 30, 42), (other, "humidity", T0 + 31, 60), peer="192.0.2.9"))
    known, new = Sensor.objects.get(device_id=MAC), Sensor.objects.get(device_id=other)
    assert (known.last_seen.timestamp(), known.last_peer) == (T0 + 30, "192.0.2.9")
    assert (new.first_seen.timestamp(), new.last_seen.timestamp()) == (T0 + 31, T0 + 31)
    assert dict(Reading.objects.values_list("sensor__device_id", "samples")) == {MAC: 2, other: 1}


@pytest.mark.postgres
def test_flushes_update_last_seen_and_rollups_on_their_page_on_postgresql():
    """The collector rewrites every sensor's last seen and current hour/day on each flush.

    With the tables' fill factors (migration 0004) most of those updates are HOT: no index
    entry written. At the default fill factor of 100 full pages make nearly none of them so
    (the PostgreSQL flush then took twice as long, docs/benchmarks.md).
    """
    from django.db import connection

    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(1000)]
    metrics = ("soil_moisture", "humidity", "air_temperature")

    def updates() -> dict[str, tuple[int, int]]:
        """(updated, HOT-updated) rows per table so far in this transaction."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname IN ('sensors_sensor', 'sensors_hourlyreading', 'sensors_dailyreading')"
            )
            return {name: (updated, hot) for name, updated, hot in cursor.fetchall()}

    write_batch(batch(*((mac, metric, T0, 20.0) for mac in macs for metric in metrics)))
    before = updates()
    write_batch(batch(*((mac, metric, T0 + 60, 21.0) for mac in macs for metric in metrics)))
    after = updates()
    delta = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}
    assert delta["sensors_sensor"][0] == 1000
    assert delta["sensors_hourlyreading"][0] == delta["sensors_dailyreading"][0] == 3000
    for name, (updated, hot) in delta.items():
        assert hot >= 0.3 * updated, (name, updated, hot)


# --- current values: one row per sensor and metric, kept with the minutes ------------------------
def current(metric: str = "humidity") -> tuple:
    row = CurrentReading.objects.get(sensor__device_id=MAC, metric=metric)
    return row.start.timestamp(), row.samples, row.value_sum, row.value_min, row.value_max, row.received_at.timestamp()


def test_the_current_value_follows_the_newest_minute_and_merges_within_it():
    write_batch(batch((MAC, "humidity", T0 + 1, 40), (MAC, "humidity", T0 + 61, 50)))
    assert current() == (T0 + 60, 1, 50, 50, 50, T0 + 61)  # the newest minute of the batch
    write_batch(batch((MAC, "humidity", T0 + 70, 56)))  # the same minute, a later flush (or another collector)
    assert current() == (T0 + 60, 2, 106, 50, 56, T0 + 70)
    write_batch(batch((MAC, "humidity", T0 + 125, 60)))  # a new minute replaces it
    assert current() == (T0 + 120, 1, 60, 60, 60, T0 + 125)
    assert CurrentReading.objects.count() == 1


def test_a_late_flush_of_an_older_minute_leaves_the_current_value_alone():
    write_batch(batch((MAC, "humidity", T0 + 125, 60)))
    write_batch(batch((MAC, "humidity", T0 + 5, 10)))  # written after an outage, but older
    assert current() == (T0 + 120, 1, 60, 60, 60, T0 + 125)
    assert Reading.objects.count() == 2  # the minute itself is stored, of course


def test_a_metric_the_board_stopped_sending_was_received_by_the_end_of_its_minute():
    write_batch(batch((MAC, "soil_moisture", T0 + 10, 600), (MAC, "humidity", T0 + 200, 50)))
    assert current("soil_moisture")[-1] == T0 + 60  # not the sensor's later report
    assert current("humidity")[-1] == T0 + 200
