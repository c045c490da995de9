"""sensors.layout: closed days' hourly rows rewritten in sensor order, values untouched, each day once."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection, connections, transaction

from sensors.ingest.aggregator import Batch
from sensors.layout import days_to_order, order_closed_days, order_day
from sensors.models import HourlyReading, OrderedDay
from sensors.retention import RetentionThread
from sensors.storage import write_batch
from tests.seed import assert_rollups_match_minutes, stored_rollups

NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
METRICS = ("air_temperature", "humidity", "soil_moisture")


def macs(count: int) -> list[str]:
    return [f"5c:cf:7f:00:{i // 256:02x}:{i % 256:02x}" for i in range(count)]


def late_sample() -> Batch:
    """A minute of 20 November 05:07 arriving days later (a journal replay after an outage)."""
    moment = int(datetime(2026, 11, 20, 5, 7, tzinfo=UTC).timestamp())
    late = Batch()
    late.add(macs(1)[0], "humidity", moment, 99.0)
    late.seen(macs(1)[0], moment, "192.0.2.7")
    return late


def late_hour() -> tuple[int, float]:
    row = HourlyReading.objects.get(
        sensor__device_id=macs(1)[0], metric="humidity", start=datetime(2026, 11, 20, 5, tzinfo=UTC)
    )
    return row.samples, row.value_max


def write_hours(sensors: int, first: datetime, hours: int) -> None:
    """One minute per sensor and metric in each hour, a flush per hour: every sensor's hour is created
    together, as the collector creates them."""
    for hour in range(hours):
        moment = (first + timedelta(hours=hour)).timestamp()
        batch = Batch()
        for index, mac in enumerate(macs(sensors)):
            for offset, name in enumerate(METRICS):
                batch.add(mac, name, int(moment), 10.0 + index + offset + hour % 7)
            batch.seen(mac, moment, "192.0.2.7")
        write_batch(batch)


def id_order(day: date) -> list[tuple[int, str, datetime]]:
    """A day's hourly rows in the order they were inserted."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    rows = HourlyReading.objects.filter(start__gte=start, start__lt=start + timedelta(days=1)).order_by("id")
    return list(rows.values_list("sensor_id", "metric", "start"))


@pytest.mark.django_db
def test_a_closed_days_hourly_rows_are_rewritten_in_sensor_order_with_their_values_unchanged():
    write_hours(3, datetime(2026, 11, 20, tzinfo=UTC), 24 * 5)  # 20-24 November; NOW is on the 24th
    before = stored_rollups(HourlyReading)
    assert id_order(date(2026, 11, 20)) != sorted(id_order(date(2026, 11, 20)))  # as the collector wrote them

    assert order_closed_days(NOW) == (3, 3 * 3 * 24 * 3)  # the 20th to the 22nd: the 23rd is the grace day

    assert stored_rollups(HourlyReading) == before
    assert_rollups_match_minutes()
    for day in (date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)):
        assert id_order(day) == sorted(id_order(day))
    assert id_order(date(2026, 11, 23)) != sorted(id_order(date(2026, 11, 23)))
    assert sorted(OrderedDay.objects.values_list("day", "rows")) == [(date(2026, 11, day), 216) for day in (20, 21, 22)]


@pytest.mark.django_db
def test_each_day_is_laid_out_once_and_the_next_run_takes_the_day_that_closed():
    write_hours(2, datetime(2026, 11, 21, tzinfo=UTC), 24 * 3)
    assert order_closed_days(NOW) == (2, 2 * 3 * 24 * 2)
    assert order_closed_days(NOW) == (0, 0)
    assert order_day(date(2026, 11, 21)) is None  # a second collector's run finds it done
    assert days_to_order(NOW + timedelta(days=1)) == [date(2026, 11, 23)]
    assert order_closed_days(NOW + timedelta(days=1)) == (1, 2 * 3 * 24)


@pytest.mark.django_db
def test_nothing_to_lay_out_on_an_empty_database_or_a_young_one():
    assert order_closed_days(NOW) == (0, 0)
    write_hours(1, NOW - timedelta(hours=30), 30)
    assert order_closed_days(NOW) == (0, 0)
    assert not OrderedDay.objects.exists()


@pytest.mark.django_db
def test_a_late_flush_into_a_laid_out_day_adds_to_its_rows():
    write_hours(2, datetime(2026, 11, 20, tzinfo=UTC), 24)
    order_closed_days(NOW)
    write_batch(late_sample())
    assert late_hour() == (2, 99.0)
    assert_rollups_match_minutes()


@pytest.mark.django_db
def test_a_stop_request_ends_the_run_between_two_days():
    write_hours(1, datetime(2026, 11, 18, tzinfo=UTC), 24 * 3)
    calls = []

    def stopping() -> bool:
        calls.append(1)
        return len(calls) > 1

    assert order_closed_days(NOW, stopping) == (1, 3 * 24)
    assert order_closed_days(NOW) == (2, 2 * 3 * 24)


@pytest.mark.django_db(transaction=True)
def test_the_retention_thread_lays_out_closed_days_even_with_the_retention_off(caplog):
    four_days_ago = datetime.combine(datetime.now(UTC).date() - timedelta(days=4), datetime.min.time(), UTC)
    write_hours(2, four_days_ago, 24)
    caplog.set_level(logging.INFO, logger="sensors.retention")
    assert RetentionThread(0).order_once() == 1
    assert "layout: 1 closed days' hourly rows (144 rows) rewritten in sensor order" in caplog.text
    assert OrderedDay.objects.filter(rows__gt=0).count() == 1


def heap_pages_read(sensor_id: int, metric: str) -> int:
    """Table pages PostgreSQL visits for a year's chart of one sensor-metric (bitmap heap scan, as the chart's plan)."""
    with connection.cursor() as cursor:
        cursor.execute("SET enable_indexscan = off")
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT SUM(value_sum) FROM sensors_hourlyreading "
                "WHERE sensor_id = %s AND metric = %s AND start >= %s",
                [sensor_id, metric, NOW - timedelta(days=365)],
            )
            plan = cursor.fetchone()[0]
        finally:
            cursor.execute("RESET enable_indexscan")
            cursor.execute("RESET enable_seqscan")
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict) -> int:
        own = node.get("Exact Heap Blocks", 0) + node.get("Lossy Heap Blocks", 0)
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan[0]["Plan"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_after_the_layout_a_long_chart_reads_a_page_per_day_not_a_page_per_hour_on_postgresql():
    """60 sensors: each hour's 180 new rows fill ~3 pages, so one sensor-metric's hours are ~one per page."""
    write_hours(60, datetime(2026, 11, 16, tzinfo=UTC), 24 * 6)  # 16-21 November, all closed on the 24th
    sensor_id = HourlyReading.objects.order_by("sensor_id").values_list("sensor_id", flat=True).first()
    scattered = heap_pages_read(sensor_id, "humidity")
    assert scattered > 100  # 144 hours

    assert RetentionThread(30).order_once() == 6  # as the collector's hourly job does it: the days, then VACUUM
    assert OrderedDay.objects.filter(rows__gt=0).count() == 6

    laid_out = heap_pages_read(sensor_id, "humidity")
    assert laid_out <= 12, (scattered, laid_out)  # 6 days of 24 rows, a page or two each


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_flush_in_progress_is_not_undone_by_the_layout_of_its_day_on_postgresql():
    """The layout copies a day and writes it back: a merge committed in between must not be lost."""
    write_hours(2, datetime(2026, 11, 20, tzinfo=UTC), 24)
    late = late_sample()
    done: list[object] = []

    def lay_out() -> None:
        try:
            done.append(order_day(date(2026, 11, 20)))
        except Exception as exc:
            done.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        write_batch(late)  # a flush into that day, not committed yet
        layout = threading.Thread(target=lay_out)
        layout.start()
        with connection.cursor() as cursor:
            for _ in range(200):  # until the layout waits for this transaction's locks
                cursor.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0]:
                    break
                layout.join(0.05)
            else:
                pytest.fail("the layout never waited for the flush")
    layout.join(10)
    assert done == [2 * 3 * 24]
    assert late_hour() == (2, 99.0)
    assert_rollups_match_minutes()
