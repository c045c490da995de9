"""Sensors, the places they stand in, and their per-minute readings.

Metrics are rows, not columns: a board fitted with a new kind of probe sends a
new `key: number` and its readings are stored without a migration. Readings
hold what the sensor sent (raw units); calibration is a display concern.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models

from .protocol import normalise_mac


class Location(models.Model):
    """A named place in the greenhouse: a bench, a tray, a zone."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Sensor(models.Model):
    """One board, identified by its Wi-Fi MAC; created the first time it reports."""

    mac = models.CharField("MAC address", max_length=17, unique=True)
    name = models.CharField(max_length=100, blank=True)
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.SET_NULL, related_name="sensors")
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    last_peer = models.GenericIPAddressField("last address", null=True, blank=True)

    class Meta:
        ordering = ["name", "mac"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """A sensor nobody has named yet is shown by its MAC."""
        return self.name or self.mac

    @staticmethod
    def normalise_mac(text: str) -> str:
        """Lowercase colon form of a MAC; raises ValidationError if `text` is not one."""
        mac = normalise_mac(text)
        if mac is None:
            raise ValidationError(f"{text!r} is not a MAC address (like 5c:cf:7f:0a:1b:2c).")
        return mac

    def clean(self) -> None:
        try:
            self.mac = self.normalise_mac(self.mac)
        except ValidationError as exc:
            raise ValidationError({"mac": exc.messages}) from exc


class ReadingQuerySet(models.QuerySet):
    def for_sensor(self, mac: str) -> ReadingQuerySet:
        return self.filter(sensor__mac=mac)

    def for_metric(self, metric: str) -> ReadingQuerySet:
        return self.filter(metric=metric)

    def between(self, since: datetime | None = None, until: datetime | None = None) -> ReadingQuerySet:
        """Minutes starting at or after `since` and before `until` (either may be open)."""
        queryset = self
        if since is not None:
            queryset = queryset.filter(start__gte=since)
        if until is not None:
            queryset = queryset.filter(start__lt=until)
        return queryset


class Reading(models.Model):
    """One metric of one sensor over one UTC minute: count, sum, min and max of its samples."""

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="readings")
    metric = models.CharField(max_length=32)
    start = models.DateTimeField(help_text="Start of the UTC minute.")
    samples = models.PositiveIntegerField()
    value_sum = models.FloatField()
    value_min = models.FloatField()
    value_max = models.FloatField()

    objects = ReadingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sensor", "metric", "start"], name="reading_one_row_per_minute"),
        ]
        indexes = [models.Index(fields=["start"], name="reading_start_idx")]

    def __str__(self) -> str:
        return f"{self.sensor} {self.metric} {self.start:%Y-%m-%d %H:%M}"

    @property
    def mean(self) -> float:
        return self.value_sum / self.samples
