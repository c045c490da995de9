"""export_readings: exact columns, ISO UTC times, full precision, filters, JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from sensors.export import COLUMNS, csv_pieces, format_epoch, format_time, write_csv
from sensors.models import Location, Reading, Sensor
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)


@pytest.fixture
def readings() -> None:
    bench = Location.objects.create(name="North bench")
    named = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c", name="Tomatoes", temperature_offset=0.5)
    named.move_to(bench, T - timedelta(days=1))
    other = Sensor.objects.create(device_id="5c:cf:7f:00:00:02")
    rows = [
        (named, "air_temperature", T, 3, 1.0, 0.1, 0.6),
        (named, "air_temperature", T.replace(minute=16), 2, 41.0, 20.0, 21.0),
        (named, "humidity", T, 1, 48.0, 48.0, 48.0),
        (other, "soil_moisture", T.replace(minute=17), 30, 18360.0, 600.0, 624.0),
    ]
    store_minutes(
        Reading(
            sensor=sensor, metric=metric, start=start, samples=samples, value_sum=total, value_min=low, value_max=high
        )
        for sensor, metric, start, samples, total, low, high in rows
    )


def export(*args: str) -> list[dict[str, str]]:
    out = io.StringIO()
    call_command("export_readings", *args, stdout=out)
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_the_documented_columns_utc_times_and_full_precision(readings):
    rows = export()
    assert COLUMNS == ["sensor", "sensor_name", "location", "metric", "start", "samples", "mean", "min", "max"]
    assert rows[0] == {
        "sensor": "5c:cf:7f:0a:1b:2c",
        "sensor_name": "Tomatoes",
        "location": "North bench",
        "metric": "air_temperature",
        "start": "2026-11-24T10:15:00Z",
        "samples": "3",
        "mean": "0.3333333333333333",  # 1.0 / 3, not 0.33
        "min": "0.1",
        "max": "0.6",
    }
    assert [row["start"] for row in rows] == sorted(row["start"] for row in rows)
    assert rows[-1]["sensor_name"] == "" and rows[-1]["location"] == ""


def test_filters_by_sensor_in_any_mac_spelling_metric_and_half_open_time_range(readings):
    assert {row["metric"] for row in export("--sensor", "5C-CF-7F-0A-1B-2C")} == {"air_temperature", "humidity"}
    assert [row["samples"] for row in export("--metric", "soil_moisture")] == ["30"]
    rows = export("--since", "2026-11-24T10:16:00Z", "--until", "2026-11-24T10:17:00Z")
    assert [(row["metric"], row["start"]) for row in rows] == [("air_temperature", "2026-11-24T10:16:00Z")]
    # an offset is honoured: 11:16+01:00 is 10:16 UTC
    assert len(export("--since", "2026-11-24T11:16:00+01:00")) == 2


def test_json_has_the_same_rows_with_numbers_as_numbers(readings):
    out = io.StringIO()
    call_command("export_readings", "--format", "json", "--metric", "humidity", stdout=out)
    assert json.loads(out.getvalue()) == [
        {
            "sensor": "5c:cf:7f:0a:1b:2c",
            "sensor_name": "Tomatoes",
            "location": "North bench",
            "metric": "humidity",
            "start": "2026-11-24T10:15:00Z",
            "samples": 1,
            "mean": 48.0,
            "min": 48.0,
            "max": 48.0,
        }
    ]


def test_empty_export_is_valid_csv_and_json():
    assert export() == []
    out = io.StringIO()
    call_command("export_readings", "--format", "json", stdout=out)
    assert json.loads(out.getvalue()) == []


def test_bad_arguments_are_clear_errors():
    with pytest.raises(CommandError, match="is not a device id"):
        call_command("export_readings", "--sensor", "kitchen")
    with pytest.raises(CommandError, match="is not an ISO 8601 time"):
        call_command("export_readings", "--since", "yesterday")


def test_location_is_where_the_sensor_stood_at_each_minute(readings):
    sensor = Sensor.objects.get(name="Tomatoes")
    sensor.move_to(Location.objects.create(name="South bench"), T.replace(minute=16))
    rows = export("--metric", "air_temperature")
    assert [(row["start"], row["location"]) for row in rows] == [
        ("2026-11-24T10:15:00Z", "North bench"),
        ("2026-11-24T10:16:00Z", "South bench"),
    ]


def test_calibrated_export_applies_offsets_and_raw_is_the_default(readings):
    raw = export("--metric", "air_temperature")
    calibrated = export("--metric", "air_temperature", "--calibrated")
    assert (raw[1]["mean"], raw[1]["min"]) == ("20.5", "20.0")
    assert (calibrated[1]["mean"], calibrated[1]["min"]) == ("21.0", "20.5")


def test_a_calibrated_soil_export_runs_downwards_with_min_below_max(readings):
    """Dry 800 reads 0 %, wet 300 reads 100 %: the raw minimum is the wettest, so it becomes the maximum."""
    Sensor.objects.filter(device_id="5c:cf:7f:00:00:02").update(soil_dry_raw=800.0, soil_wet_raw=300.0)
    (row,) = export("--metric", "soil_moisture", "--calibrated")
    sensor = Sensor.objects.get(device_id="5c:cf:7f:00:00:02")
    assert float(row["mean"]) == sensor.calibrate("soil_moisture", 18360.0 / 30)  # 612 raw: 37.6 %
    assert (float(row["min"]), float(row["max"])) == (
        sensor.calibrate("soil_moisture", 624.0),  # the driest raw reading, 35.2 %
        sensor.calibrate("soil_moisture", 600.0),  # the wettest, 40 %
    )
    assert float(row["min"]) < float(row["mean"]) < float(row["max"])


def test_a_streamed_csv_is_the_export_sent_in_pieces_of_whole_lines():
    """The download sends the header at once, then whole lines a few hundred at a time (one socket write each)."""
    rows = [
        (f"5c:cf:7f:00:00:{n % 7:02x}", 'Bench, "north"', "", "humidity", f"T{n}", 1, n / 3, 0, 1) for n in range(1234)
    ]
    pieces = list(csv_pieces(iter(rows), lines=500))
    assert pieces[0] == ",".join(COLUMNS) + "\n"  # the first byte does not wait for the database
    assert [piece.count("\n") for piece in pieces[1:]] == [500, 500, 234]
    assert all(piece.endswith("\n") for piece in pieces)
    whole = io.StringIO()
    write_csv(rows, whole)
    assert "".join(pieces) == whole.getvalue()  # the same bytes as export_readings writes
    assert list(csv_pieces(iter([]))) == [",".join(COLUMNS) + "\n"]


@given(st.datetimes(min_value=datetime(1000, 1, 2), timezones=st.timezones()))
def test_times_are_written_as_iso_8601_utc_with_a_z_to_the_second(moment):
    """format_time is written field by field for speed; it must say what strftime says, in any zone (years
    from 1000: glibc does not pad earlier ones, which ISO 8601 wants)."""
    assert format_time(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_an_epoch_second_is_written_as_its_datetime_is(moment):
    """The exports read each minute's start as epoch seconds; its text must be format_time's of that moment."""
    seconds = int(moment.replace(microsecond=0).timestamp())
    assert format_epoch(seconds) == format_time(moment)
