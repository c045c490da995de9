"""What the dashboard shows: each sensor's current values with their age and trend, grouped by location.

Everything here reads the current-value rows (`CurrentReading`, one per sensor and metric) and
the one minute an hour before each of them, so the dashboard and its 30 s refresh cost the same
after a day or a year of history: a fixed handful of queries, rows in proportion to the sensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from django.utils import timezone

from sensors.expressions import EpochStep
from sensors.metrics import derived_for, metric
from sensors.models import CurrentReading, Location, Reading, Sensor

TREND_SPAN = timedelta(hours=1)
SPAN_SECONDS = int(TREND_SPAN.total_seconds())
# A change smaller than this (in the value's own unit) is shown as steady, not as a rise or a fall.
STEADY = {"air_temperature": 0.3, "humidity": 1.0, "soil_moisture": 1.0, "vpd": 0.05, "dew_point": 0.3}
ARROWS = {"rising": "↑", "falling": "↓", "steady": "→"}
# Sensor fields no card shows (an address and two timestamps fewer to load per sensor).
NOT_SHOWN = ("first_seen", "last_peer", "live_until")


def ago(delta: timedelta) -> str:
    """A short, human "how long ago": 12 s ago, 5 min ago, 3 h ago, 2 days ago."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


@dataclass(slots=True)
class ShownValue:
    """One value on a sensor's card: calibrated, with its unit, its age and its change over the last hour.

    Its texts are made once, here: the card and the comparison table both show them, for 1,000
    values a refresh in a greenhouse of 200 sensors.
    """

    metric: str
    label: str
    value: float
    unit: str
    received_at: datetime
    age: str
    change: float | None = None  # over TREND_SPAN, in the value's unit; None: no value an hour ago
    derived: bool = False
    trend: str = field(init=False)  # rising, falling or steady over the last hour ("" when unknown)
    text: str = field(init=False)  # the value as shown: one decimal and the unit
    change_text: str = field(init=False)  # "rising over the last hour (+1.2 °C)", "" when unknown

    def __post_init__(self) -> None:
        self.text = f"{self.value:.1f} {self.unit}".rstrip()
        if self.change is None:
            self.trend = self.change_text = ""
            return
        if abs(self.change) < STEADY.get(self.metric, 0.0):
            self.trend = "steady"
        else:
            self.trend = "rising" if self.change > 0 else "falling"
        self.change_text = f"{self.trend} over the last hour ({self.change:+.1f} {self.unit})".rstrip()

    @property
    def arrow(self) -> str:
        return ARROWS.get(self.trend, "")


@dataclass
class SensorCard:
    sensor: Sensor
    online: bool
    values: list[ShownValue] = field(default_factory=list)

    @property
    def offline_since(self) -> datetime | None:
        """When an offline sensor went away: as its broker said (a last will), else when it last reported."""
        return None if self.online else (self.sensor.offline_since or self.sensor.last_seen)

    def value(self, name: str) -> ShownValue | None:
        return self._by_metric.get(name)

    @cached_property
    def _by_metric(self) -> dict[str, ShownValue]:
        return {value.metric: value for value in self.values}


@dataclass
class LocationCard:
    """A location's sensors side by side: one row per sensor, one column per metric, and their spread."""

    location: Location | None
    sensors: list[SensorCard]

    @property
    def name(self) -> str:
        return self.location.name if self.location is not None else "Not placed"

    @cached_property
    def metrics(self) -> list[tuple[str, str]]:
        """(metric, label) of every value any sensor here shows, measured ones first."""
        seen: dict[str, tuple[bool, str]] = {}
        for card in self.sensors:
            for value in card.values:
                seen.setdefault(value.metric, (value.derived, value.label))
        return [(name, label) for name, (_, label) in sorted(seen.items(), key=lambda item: (item[1][0], item[0]))]

    @cached_property
    def rows(self) -> list[tuple[SensorCard, list[ShownValue | None]]]:
        return [(card, [card.value(name) for name, _ in self.metrics]) for card in self.sensors]

    @cached_property
    def spread(self) -> list[tuple[str, str]]:
        """(label, text) per metric: how far the online sensors here disagree (max - min), given two or more."""
        cells = []
        for name, label in self.metrics:
            values = [v for card in self.sensors if card.online and (v := card.value(name)) is not None]
            units = {value.unit for value in values}
            if len(values) < 2 or len(units) != 1:
                cells.append((label, ""))
                continue
            numbers = [value.value for value in values]
            cells.append((label, f"{max(numbers) - min(numbers):.1f} {units.pop()}".strip()))
        return cells


@dataclass(frozen=True, slots=True)
class Current:
    """A sensor's current value of one metric (a CurrentReading row, read as plain values)."""

    sensor_id: int
    metric: str
    start: int  # the minute's, in epoch seconds (compared, never shown)
    mean: float
    received_at: datetime


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _currents() -> list[Current]:
    """Every current value, in metric order. Times come from the database as epoch seconds: turning
    1,200 timestamps into datetimes in psycopg's loader (Django's time-zone-aware one is pure Python)
    or Django's SQLite converter cost more than the query itself. A sensor's metrics mostly arrive
    on one line, so each distinct moment becomes a datetime once."""
    rows = (
        CurrentReading.objects.filter(samples__gt=0)
        .order_by("metric")
        .values_list("sensor_id", "metric", "value_sum", "samples", EpochStep("start", 1), EpochStep("received_at", 1))
    )
    moments: dict[int, datetime] = {}
    currents = []
    for sensor_id, name, total, samples, start, received in rows:
        moment = moments.get(received)
        if moment is None:
            moment = moments[received] = _utc(received)
        currents.append(Current(sensor_id, name, start, total / samples, moment))
    return currents


def _hour_ago(currents: list[Current]) -> dict[tuple[int, str, int], float]:
    """The means of the minutes TREND_SPAN before the current ones, by (sensor, metric, start), in one query
    on the minutes' start index (plain tuples and epoch seconds, as in `_currents`). Keyed by start
    too: at a minute's turn some sensors' current minute is a minute older than others', and each
    must meet the minute an hour before its own."""
    starts = {current.start - SPAN_SECONDS for current in currents}
    if not starts:
        return {}
    rows = Reading.objects.filter(start__in=[_utc(start) for start in starts], samples__gt=0).values_list(
        "sensor_id", "metric", EpochStep("start", 1), "value_sum", "samples"
    )
    return {(sensor_id, name, start): total / samples for sensor_id, name, start, total, samples in rows}


def sensor_card(sensor: Sensor, currents: list[Current], before: dict, now: datetime) -> SensorCard:
    card = SensorCard(sensor, sensor.is_online(now))
    calibrated: dict[str, float] = {}  # metric -> its current value, calibrated
    calibrated_before: dict[str, float] = {}  # metric -> its value TREND_SPAN before, calibrated
    ages: dict[datetime, str] = {}  # a card's values mostly share one moment: its "12 s ago" made once
    for current in currents:
        info = metric(current.metric)
        calibrate = info.calibrator(sensor)  # the sensor's calibration fields read once per metric
        value = calibrated[current.metric] = calibrate(current.mean)
        earlier = before.get((sensor.id, current.metric, current.start - SPAN_SECONDS))
        change = None
        if earlier is not None:
            calibrated_before[current.metric] = calibrate(earlier)
            change = value - calibrated_before[current.metric]
        age = ages.get(current.received_at)
        if age is None:
            age = ages[current.received_at] = ago(now - current.received_at)
        card.values.append(
            ShownValue(current.metric, info.label, value, info.unit_for(sensor), current.received_at, age, change)
        )
    if not currents:
        return card
    newest = max(current.received_at for current in currents)
    age = ages[newest]
    for derived in derived_for(frozenset(calibrated)):
        value = derived.of(calibrated)
        if value is None:
            continue
        earlier_value = derived.of(calibrated_before)
        change = None if earlier_value is None else value - earlier_value
        card.values.append(ShownValue(derived.name, derived.label, value, derived.unit, newest, age, change, True))
    return card


def location_cards(now: datetime | None = None) -> list[LocationCard]:
    """Every location with its sensors' cards, sensors without a location last ("Not placed")."""
    now = now or timezone.now()
    sensors = Sensor.objects.defer(*NOT_SHOWN).order_by("name", "device_id")  # grouped by location below
    currents: dict[int, list[Current]] = {}
    everything = _currents()
    for current in everything:
        currents.setdefault(current.sensor_id, []).append(current)
    before = _hour_ago(everything)
    cards = [sensor_card(sensor, currents.get(sensor.id, []), before, now) for sensor in sensors]
    # The few locations read on their own, not joined to each of hundreds of sensors. Read after the
    # sensors: a sensor whose location was deleted in between is then shown as not placed.
    locations = {location.pk: location for location in Location.objects.all()}
    groups: dict[Location | None, list[SensorCard]] = {}
    for card in cards:
        groups.setdefault(locations.get(card.sensor.location_id), []).append(card)
    ordered = sorted(groups.items(), key=lambda item: (item[0] is None, str(item[0] or "")))
    return [LocationCard(location, cards) for location, cards in ordered]
