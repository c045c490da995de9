"""History queries: bounded points, aggregation per step, gaps, coverage, calibration, placements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensors.models import Location, Reading, Sensor
from sensors.web.history import location_series, sensor_series, step_for
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def minute_rows(sensor: Sensor, metric: str, start: datetime, minutes: int, value=lambda i: float(i), samples=30):
    store_minutes(
        Reading(
            sensor=sensor,
            metric=metric,
            start=start + timedelta(minutes=i),
            samples=samples,
            value_sum=value(i) * samples,
            value_min=value(i) - 1,
            value_max=value(i) + 1,
        )
        for i in range(minutes)
    )


@pytest.fixture
def sensor() -> Sensor:
    return Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")


def test_an_hour_of_minutes_is_returned_minute_by_minute(sensor):
    minute_rows(sensor, "humidity", T0, 60)
    series = sensor_series(sensor, "humidity", T0, T0 + timedelta(hours=1))
    assert series.step_seconds == 60
    assert [p.mean for p in series.points] == [float(i) for i in range(60)]
    assert series.points[0].time == T0
    assert series.coverage == 1.0  # 30 samples a minute = one per 2 s


def test_a_week_is_aggregated_in_the_database_to_at_most_max_points(sensor):
    minute_rows(sensor, "humidity", T0, 7 * 1440, value=lambda i: float(i % 100))
    series = sensor_series(sensor, "humidity", T0, T0 + timedelta(days=7), max_points=500)
    assert len(series.points) <= 500
    assert series.step_seconds == step_for(T0, T0 + timedelta(days=7), 500) == 30 * 60
    first = series.points[0]
    assert first.samples == 30 * 30
    assert first.mean == pytest.approx(sum(range(30)) / 30)
    assert (first.low, first.high) == (-1.0, 30.0)
    assert series.samples == 7 * 1440 * 30


def test_an_outage_is_a_gap_and_lowers_coverage(sensor):
    minute_rows(sensor, "air_temperature", T0, 20)
    minute_rows(sensor, "air_temperature", T0 + timedelta(minutes=40), 20)
    series = sensor_series(sensor, "air_temperature", T0, T0 + timedelta(hours=1))
    times = [p.time for p in series.points]
    assert T0 + timedelta(minutes=19) in times and T0 + timedelta(minutes=20) not in times
    assert len(times) == 40
    assert series.coverage == pytest.approx(40 / 60)


def test_calibration_is_applied_on_display_and_never_stored(sensor):
    sensor.soil_dry_raw, sensor.soil_wet_raw, sensor.temperature_offset = 800.0, 300.0, -1.5
    sensor.save()
    minute_rows(sensor, "soil_moisture", T0, 1, value=lambda i: 550.0)
    minute_rows(sensor, "air_temperature", T0, 1, value=lambda i: 20.0)
    soil = sensor_series(sensor, "soil_moisture", T0, T0 + timedelta(hours=1)).points[0]
    # raw 549..551 maps to 50.2..49.8 %: the mapping runs downwards, the band stays ordered
    assert (soil.mean, soil.low, soil.high) == (50.0, pytest.approx(49.8), pytest.approx(50.2))
    temp = sensor_series(sensor, "air_temperature", T0, T0 + timedelta(hours=1)).points[0]
    assert temp.mean == 18.5
    raw = sensor_series(sensor, "air_temperature", T0, T0 + timedelta(hours=1), calibrated=False).points[0]
    assert raw.mean == 20.0
    assert Reading.objects.get(metric="soil_moisture").value_sum == 550.0 * 30


def test_moving_a_sensor_keeps_its_past_in_the_old_location(sensor):
    north, south = Location.objects.create(name="North"), Location.objects.create(name="South")
    sensor.move_to(north, T0)
    sensor.move_to(south, T0 + timedelta(minutes=30))
    minute_rows(sensor, "humidity", T0, 60)
    end = T0 + timedelta(hours=1)
    north_points = location_series(north, "humidity", T0, end)[sensor].points
    south_points = location_series(south, "humidity", T0, end)[sensor].points
    assert [p.mean for p in north_points] == [float(i) for i in range(30)]
    assert [p.mean for p in south_points] == [float(i) for i in range(30, 60)]
    assert sensor.location == south
    assert sensor.placements.get(location=north).end == T0 + timedelta(minutes=30)
