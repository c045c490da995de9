"""History queries for the charts and the API: one place, aggregated in the database.

`sensor_series` answers (sensor, metric, start, end, max points) with at most
`max_points` points. Stored rows are grouped into equal steps by the database
(GROUP BY the step an epoch second falls in), so a range costs one indexed scan
and returns at most `max_points` rows. `source_for` picks the table: the
coarsest stored resolution (minute, hour, day) whose intervals fit whole into a
step reads the fewest rows for the same exact answer; minutes are only used for
ranges the retention period still covers. Callers never choose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import FloatField, Max, Min, Sum

from sensors.expressions import EpochStep
from sensors.metrics import DERIVED, Derived, calibrated_band
from sensors.models import RESOLUTIONS, HourlyReading, Location, Reading, ReadingFields, ReadingQuerySet, Sensor

SAMPLE_PERIOD_SECONDS = 2  # the firmware sends one line every 2 s
DEFAULT_MAX_POINTS = 1000
MAX_POINTS_LIMIT = 5000
NICE_STEPS_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080]


@dataclass(frozen=True)
class Point:
    time: datetime
    samples: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Series:
    metric: str
    start: datetime
    end: datetime
    step_seconds: int
    points: list[Point]  # only steps with data; a missing step is a gap
    samples: int
    resolution: str = "minute"  # the stored rows the points were computed from

    @property
    def expected_samples(self) -> int:
        return max(1, int((self.end - self.start).total_seconds() // SAMPLE_PERIOD_SECONDS))

    @property
    def coverage(self) -> float:
        """Samples received / samples expected at one per 2 s (1.0 is a perfect board)."""
        return self.samples / self.expected_samples


def step_for(start: datetime, end: datetime, max_points: int) -> int:
    """The smallest nice step (whole minutes) giving at most `max_points` steps in the range."""
    minutes = max(1.0, (end - start).total_seconds() / 60)
    for step in NICE_STEPS_MINUTES:
        if math.ceil(minutes / step) <= max_points:
            return step * 60
    return math.ceil(minutes / max_points) * 60


def finest_stored(start: datetime, now: datetime | None = None) -> type[ReadingFields]:
    """Minutes while the retention period still holds them from `start` on; hours (kept forever) before."""
    kept_since = Reading.kept_since(now=now)
    return Reading if kept_since is None or start >= kept_since else HourlyReading


def source_for(
    start: datetime, end: datetime, max_points: int, now: datetime | None = None
) -> tuple[type[ReadingFields], int]:
    """The table to read and the step in seconds for a chart of [start, end) with at most `max_points` points."""
    finest = finest_stored(start, now)
    step = max(step_for(start, end, max_points), finest.SECONDS)
    step = math.ceil(step / finest.SECONDS) * finest.SECONDS
    fitting = [model for model in RESOLUTIONS.values() if model.SECONDS >= finest.SECONDS and step % model.SECONDS == 0]
    return fitting[-1], step


def _source_rows(readings: ReadingQuerySet, step: int) -> ReadingQuerySet:
    """Per-step aggregates of stored rows (minutes or rollups: the same fields)."""
    return (
        readings.annotate(step=EpochStep("start", step))
        .values("step")
        .annotate(
            samples=Sum("samples"),
            total=Sum("value_sum", output_field=FloatField()),
            low=Min("value_min"),
            high=Max("value_max"),
        )
        .order_by("step")
        .values_list("step", "samples", "total", "low", "high")
    )


def _series(
    rows_of: Callable[[type[ReadingFields]], ReadingQuerySet],
    sensor: Sensor | None,
    metric: str,
    start: datetime,
    end: datetime,
    max_points: int,
    calibrated: bool,
) -> Series:
    max_points = max(1, min(max_points, MAX_POINTS_LIMIT))
    model, step = source_for(start, end, max_points)
    rows = _source_rows(rows_of(model).for_metric(metric).between(start, end), step)
    # The sensor's calibration bound once for the series (a year's chart has ~700 points).
    calibrate = sensor.calibrator_if_any(metric) if calibrated and sensor is not None else None
    points = []
    total_samples = 0
    for step_start, samples, total, low, high in rows:
        mean = total / samples
        if calibrate is not None:
            mean, low, high = calibrated_band(calibrate, mean, low, high)
        points.append(Point(datetime.fromtimestamp(step_start, tz=UTC), samples, mean, low, high))
        total_samples += samples
    return Series(metric, start, end, step, points, total_samples, model.RESOLUTION)


def derived_series(derived: Derived, inputs: dict[str, Series]) -> Series:
    """A derived value (VPD, dew point) per step, from its inputs' calibrated series of the same steps.

    A step counts only where every input has data; its band is the value itself (the min and
    max of a derived value cannot be had from the inputs' extremes), its samples the fewest of
    the inputs'.
    """
    first = inputs[derived.inputs[0]]
    by_time = {name: {point.time: point for point in series.points} for name, series in inputs.items()}
    points = []
    for moment in (point.time for point in first.points):
        found = {name: by_time[name].get(moment) for name in derived.inputs}
        if any(point is None for point in found.values()):
            continue
        value = derived.of({name: point.mean for name, point in found.items()})
        if value is None:
            continue
        samples = min(point.samples for point in found.values())
        points.append(Point(moment, samples, value, value, value))
    total = sum(point.samples for point in points)
    return Series(derived.name, first.start, first.end, first.step_seconds, points, total, first.resolution)


def sensor_series(
    sensor: Sensor,
    metric: str,
    start: datetime,
    end: datetime,
    max_points: int = DEFAULT_MAX_POINTS,
    calibrated: bool = True,
) -> Series:
    """One sensor's metric (or derived value) over [start, end), at most `max_points` points."""
    derived = DERIVED.get(metric)
    if derived is not None:
        inputs = {name: sensor_series(sensor, name, start, end, max_points) for name in derived.inputs}
        return derived_series(derived, inputs)
    return _series(
        lambda model: model.objects.filter(sensor=sensor), sensor, metric, start, end, max_points, calibrated
    )


def location_series(
    location: Location,
    metric: str,
    start: datetime,
    end: datetime,
    max_points: int = DEFAULT_MAX_POINTS,
    calibrated: bool = True,
) -> dict[Sensor, Series]:
    """Each sensor's series for the time it stood in `location` (placement valid per minute)."""
    derived = DERIVED.get(metric)
    if derived is not None:
        by_input = {name: location_series(location, name, start, end, max_points) for name in derived.inputs}
        both = set.intersection(*(set(series) for series in by_input.values()))
        return {
            sensor: derived_series(derived, {name: by_input[name][sensor] for name in derived.inputs})
            for sensor in both
        }
    placed = finest_stored(start).objects.placed_in(location).for_metric(metric).between(start, end)
    sensor_ids = placed.values_list("sensor_id", flat=True).distinct()
    return {
        sensor: _series(
            lambda model, sensor=sensor: model.objects.placed_in(location).filter(sensor=sensor),
            sensor,
            metric,
            start,
            end,
            max_points,
            calibrated,
        )
        for sensor in Sensor.objects.filter(id__in=sensor_ids)
    }


def default_range(hours: float, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `hours` up to the end of the current minute."""
    now = now or datetime.now(UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(hours=hours), end
