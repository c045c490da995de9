"""Sensors, the places they stand in, and their per-minute readings.

Metrics are rows, not columns: a board fitted with a new kind of probe sends a
new `key: number` and its readings are stored without a migration. Readings
hold what the sensor sent (raw units); calibration is a display concern.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from .identity import MAX_DEVICE_ID_LENGTH as DEVICE_ID_LENGTH
from .identity import Source, normalise_device_id, source_of
from .metrics import calibrated_band, metric


class Location(models.Model):
    """A named place in the greenhouse: a bench, a tray, a zone."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Sensor(models.Model):
    """One device, identified by its device id (sensors.identity); created the first time it reports.

    A TCP board's id is its Wi-Fi MAC; an MQTT device's is ``<source>:<name>`` (``tasmota:greenhouse-1``).
    """

    device_id = models.CharField("device id", max_length=DEVICE_ID_LENGTH, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices(), default=Source.TCP, editable=False)
    name = models.CharField(max_length=100, blank=True)
    # Until then the collector writes this sensor's newest samples every few seconds (LiveReading);
    # set by the control process for the sensors its rules read.
    live_until = models.DateTimeField(null=True, blank=True, editable=False)
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.SET_NULL, related_name="sensors")
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_peer = models.GenericIPAddressField("last address", null=True, blank=True)
    # Set when the device's broker says it went away (an MQTT last will: LWT "Offline", status "offline");
    # cleared by its "online". Until then the sensor counts as offline whatever `last_seen` says.
    offline_since = models.DateTimeField("offline (as the device reported) since", null=True, blank=True)
    # Calibration: applied when readings are shown or exported with --calibrated, never stored.
    soil_dry_raw = models.FloatField(
        "soil raw reading when dry", null=True, blank=True, help_text="Raw probe value in dry soil (shown as 0 %)."
    )
    soil_wet_raw = models.FloatField(
        "soil raw reading when wet", null=True, blank=True, help_text="Raw probe value in wet soil (shown as 100 %)."
    )
    temperature_offset = models.FloatField("air temperature offset (°C)", default=0.0)
    humidity_offset = models.FloatField("humidity offset (%RH)", default=0.0)

    class Meta:
        ordering = ["name", "device_id"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """A sensor nobody has named yet is shown by its device id."""
        return self.name or self.device_id

    @staticmethod
    def normalise_device_id(text: str) -> str:
        """A device id in its one spelling; raises ValidationError if `text` is not one."""
        device_id = normalise_device_id(text)
        if device_id is None:
            raise ValidationError(
                f"{text!r} is not a device id: a MAC address (like 5c:cf:7f:0a:1b:2c) or an MQTT device "
                "(like tasmota:greenhouse-1, esphome:bench, shelly:shellyplusht-08b61fcb7c24, mqtt:tray-3)."
            )
        return device_id

    def clean(self) -> None:
        try:
            self.device_id = self.normalise_device_id(self.device_id)
        except ValidationError as exc:
            raise ValidationError({"device_id": exc.messages}) from exc
        self.source = source_of(self.device_id)
        if (self.soil_dry_raw is None) != (self.soil_wet_raw is None):
            raise ValidationError("Give both the dry and the wet soil reading, or neither.")
        if self.soil_dry_raw is not None and self.soil_dry_raw == self.soil_wet_raw:
            raise ValidationError({"soil_wet_raw": "The wet reading must differ from the dry reading."})

    def is_online(self, now: datetime | None = None) -> bool:
        """Reported within SENSOR_OFFLINE_AFTER seconds (boards send every 2 s), and not reported gone by its broker."""
        if self.last_seen is None or self.offline_since is not None:
            return False
        now = now or timezone.now()
        return (now - self.last_seen).total_seconds() <= settings.SENSOR_OFFLINE_AFTER

    def latest_readings(self) -> ReadingQuerySet:
        """The newest minute of each metric this sensor has sent (one row each, whatever the history's length)."""
        return self.current_readings.order_by("metric")

    def calibrate(self, name: str, value: float) -> float:
        """A stored raw value as shown to the grower, as the metric registry says (soil as 0-100 %, offsets added)."""
        return metric(name).calibrate(self, value)

    def calibrator(self, name: str) -> Callable[[float], float]:
        """`calibrate` of metric `name` as a function, this sensor's calibration read once (for many values)."""
        return metric(name).calibrator(self)

    def calibrator_if_any(self, name: str) -> Callable[[float], float] | None:
        """`calibrator(name)`, or None where this sensor's calibration leaves metric `name` as stored
        (for loops over many values that skip the call when there is nothing to apply)."""
        return self.calibrator(name) if self.is_calibrated(name) else None

    def is_calibrated(self, name: str) -> bool:
        """Does this sensor's calibration apply to metric `name` (soil: only once dry and wet are set)?"""
        return metric(name).is_calibrated(self)

    def calibrate_band(self, name: str, mean: float, low: float, high: float) -> tuple[float, float, float]:
        """Calibrated mean, min and max; a soil mapping runs downwards, so min and max are re-ordered."""
        return calibrated_band(metric(name).calibrator(self), mean, low, high)

    def display_unit(self, name: str, calibrated: bool = True) -> str:
        """The unit a value is shown in: soil is % only once dry/wet are set."""
        return metric(name).unit_for(self, calibrated)

    def shown_value(self, reading: Reading) -> dict[str, object]:
        """A reading's mean as the dashboard and the admin show it: label, calibrated value, unit."""
        return {
            "label": metric(reading.metric).label,
            "value": self.calibrate(reading.metric, reading.mean),
            "unit": self.display_unit(reading.metric),
        }

    @transaction.atomic
    def move_to(self, location: Location | None, when: datetime | None = None) -> None:
        """Place the sensor somewhere new from `when` on; its past stays where it was."""
        when = when or timezone.now()
        self.placements.filter(end__isnull=True).update(end=when)
        if location is not None:
            self.placements.create(location=location, start=when)
        self.location = location
        self.save(update_fields=["location"])


class RefusedSensor(models.Model):
    """A device whose lines or messages the collector refused, so a grower can tell a real new board from a flood.

    Written by the collector (sensors.storage) when a new device is over the registration limits
    (COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE, COLLECTOR_MAX_SENSORS) or unknown in reject mode;
    `register` turns it into a sensor, whose lines are then accepted.
    """

    device_id = models.CharField("device id", max_length=DEVICE_ID_LENGTH, unique=True)
    reason = models.CharField(max_length=32)
    lines = models.PositiveBigIntegerField("lines refused", default=0)
    first_refused = models.DateTimeField()
    last_refused = models.DateTimeField(db_index=True)
    last_peer = models.GenericIPAddressField("last address", null=True, blank=True)

    class Meta:
        ordering = ["-last_refused"]

    def __str__(self) -> str:
        return self.device_id

    @transaction.atomic
    def register(self) -> Sensor:
        """Add this device as a sensor (the collector accepts it within seconds) and forget the refusal."""
        sensor, _ = Sensor.objects.get_or_create(
            device_id=self.device_id, defaults={"source": source_of(self.device_id)}
        )
        self.delete()
        return sensor


class Placement(models.Model):
    """A sensor stood in a location from `start` until `end` (open while it is still there)."""

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="placements")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="placements")
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sensor", "-start"]
        indexes = [models.Index(fields=["location", "start"], name="placement_location_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__isnull=True) | models.Q(end__gt=models.F("start")),
                name="placement_ends_after_it_starts",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sensor} in {self.location} from {self.start:%Y-%m-%d %H:%M}"


class ReadingQuerySet(models.QuerySet):
    def for_sensor(self, device_id: str) -> ReadingQuerySet:
        return self.filter(sensor__device_id=device_id)

    def for_metric(self, metric: str) -> ReadingQuerySet:
        return self.filter(metric=metric)

    def placed_in(self, location: Location) -> ReadingQuerySet:
        """Readings taken while their sensor stood in `location` (placement valid at each minute)."""
        return self.filter(
            models.Q(sensor__placements__end__isnull=True) | models.Q(start__lt=models.F("sensor__placements__end")),
            sensor__placements__location=location,
            start__gte=models.F("sensor__placements__start"),
        )

    def between(self, since: datetime | None = None, until: datetime | None = None) -> ReadingQuerySet:
        """Minutes starting at or after `since` and before `until` (either may be open)."""
        queryset = self
        if since is not None:
            queryset = queryset.filter(start__gte=since)
        if until is not None:
            queryset = queryset.filter(start__lt=until)
        return queryset


class ReadingFields(models.Model):
    """count/sum/min/max of one metric of one sensor over one interval starting at `start` (UTC).

    Minutes, hours and days share these fields, so a mean is exact at every
    resolution: sums and counts add up, min and max combine. Each concrete model's
    `sensor` key has no index of its own (`db_index=False`): its unique (sensor, metric,
    start) index serves every lookup by sensor, and one index fewer is one write fewer
    per row in every flush.
    """

    metric = models.CharField(max_length=32)
    start = models.DateTimeField(help_text="Start of the UTC interval.")
    samples = models.PositiveIntegerField()
    value_sum = models.FloatField()
    value_min = models.FloatField()
    value_max = models.FloatField()

    objects = ReadingQuerySet.as_manager()

    # Seconds in one row's interval and its name; set by each concrete model.
    SECONDS = 0
    RESOLUTION = ""

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.sensor} {self.metric} {self.start:%Y-%m-%d %H:%M}"

    @property
    def mean(self) -> float:
        return self.value_sum / self.samples


class Reading(ReadingFields):
    """One metric of one sensor over one UTC minute (kept for MINUTE_RETENTION_DAYS)."""

    SECONDS = 60
    RESOLUTION = "minute"
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="readings", db_index=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric", "start"], name="reading_one_row_per_minute"),
        ]
        indexes = [models.Index(fields=["start"], name="reading_start_idx")]

    @staticmethod
    def kept_since(keep_days: int | None = None, now: datetime | None = None) -> datetime | None:
        """The oldest minute the retention keeps (the start of that hour), or None when minutes are kept forever.

        `keep_days` defaults to MINUTE_RETENTION_DAYS. Older minutes are deleted by sensors.retention;
        their samples stay in the hourly and daily rollups, which history reads instead.
        """
        keep_days = settings.MINUTE_RETENTION_DAYS if keep_days is None else keep_days
        if keep_days <= 0:
            return None
        now = now or datetime.now(UTC)
        return (now - timedelta(days=keep_days)).replace(minute=0, second=0, microsecond=0)


class HourlyReading(ReadingFields):
    """The minutes of one UTC hour rolled up; merged by the collector as it writes, kept forever."""

    SECONDS = 3600
    RESOLUTION = "hour"
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="hourly_readings", db_index=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric", "start"], name="hourly_reading_one_row_per_hour"),
        ]
        # A day's rows, for sensors.layout. The flush's updates of the current hour never change
        # `start`, so they stay on their page (HOT on PostgreSQL) with this index too.
        indexes = [models.Index(fields=["start"], name="hourly_reading_start_idx")]


class DailyReading(ReadingFields):
    """The minutes of one UTC day rolled up; merged by the collector as it writes, kept forever."""

    SECONDS = 86400
    RESOLUTION = "day"
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="daily_readings", db_index=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric", "start"], name="daily_reading_one_row_per_day"),
        ]


class CurrentReading(ReadingFields):
    """The newest minute of one metric of one sensor, and when its newest sample arrived: "now" for every page.

    One row per sensor and metric, merged by the collector in the transaction that merges the
    minute itself (sensors.storage.write_batch), so the dashboard, the admin list and the
    location pages read the present in O(sensors), the same after a day or a year. The
    retention never deletes these rows: a sensor silent for months still shows its last values.
    """

    SECONDS = 60
    RESOLUTION = "current"
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="current_readings", db_index=False)
    received_at = models.DateTimeField(help_text="When the newest sample of this metric reached the collector.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric"], name="current_reading_one_row_per_metric"),
        ]

    def age(self, now: datetime | None = None) -> timedelta:
        """How long ago the newest sample arrived."""
        return (now or timezone.now()) - self.received_at


class LiveReading(models.Model):
    """A watched sensor's newest sample of one metric, written every COLLECTOR_LIVE_INTERVAL seconds.

    The minutes are merged every open-minute interval (30 s) to keep the write load down; a rule
    that must react in seconds (control) asks for live values of the sensors it reads
    (`Sensor.live_until`), and the collector overwrites these rows for those sensors only. Not
    history: each row is replaced by the next sample; the minutes hold every sample.
    """

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="live_readings", db_index=False)
    metric = models.CharField(max_length=64)
    value = models.FloatField(help_text="the newest sample, raw (as the board sent it)")
    received_at = models.DateTimeField()
    minute = models.DateTimeField(help_text="the minute the sample belongs to")
    samples = models.PositiveIntegerField(
        help_text="samples of that minute and the one before that the minute rows did not hold yet"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric"], name="live_reading_one_row_per_metric"),
        ]


class JournalMark(models.Model):
    """How far into one collector journal one minute is stored: the key of exactly-once writes.

    "Minute `minute` holds every sample of journal `journal`'s records up to `seq`", written by
    sensors.storage.write_batch in the transaction that merges the minute. A replay of the
    journal (after a crash or an outage) applies only newer records, and a retried batch whose
    mark is already here (its COMMIT went through but the answer was lost) is skipped. Marks
    older than everything left in the journal are deleted as the collector goes.
    """

    journal = models.CharField(max_length=64)
    minute = models.BigIntegerField(help_text="UTC epoch seconds of the minute's start")
    seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journal", "minute"], name="journal_mark_one_per_minute"),
        ]

    def __str__(self) -> str:
        return f"journal {self.journal} minute {self.minute}: records up to {self.seq}"


class OrderedDay(models.Model):
    """A closed UTC day whose hourly rows sensors.layout rewrote in (sensor, metric, start) order."""

    day = models.DateField(primary_key=True)
    rows = models.PositiveIntegerField(help_text="Hourly rows rewritten.")
    ordered_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.day}: {self.rows} hourly rows in sensor order"


# Stored resolutions, finest first: name -> model.
RESOLUTIONS: dict[str, type[ReadingFields]] = {
    model.RESOLUTION: model for model in (Reading, HourlyReading, DailyReading)
}
