"""python manage.py export_readings: minute, hourly or daily readings as CSV or JSON on stdout."""

from __future__ import annotations

import argparse
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.export import export_rows, ordered_for_export, parse_time, write_csv, write_json
from sensors.models import RESOLUTIONS, Sensor


def parse_moment(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC (stored times are UTC)."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time like 2026-11-24T10:15:00Z") from exc


class Command(BaseCommand):
    help = "Export readings (samples, mean, min, max per minute, hour or day) for a spreadsheet or pandas."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument(
            "--sensor",
            help="only this sensor (its device id: a MAC address in any usual spelling, or e.g. tasmota:greenhouse-1)",
        )
        parser.add_argument("--metric", help="only this metric, e.g. air_temperature")
        parser.add_argument(
            "--resolution",
            choices=list(RESOLUTIONS),
            default="minute",
            help="one row per minute (default; kept MINUTE_RETENTION_DAYS), hour or day (kept forever)",
        )
        parser.add_argument("--since", type=parse_moment, help="rows starting at or after this time (ISO 8601)")
        parser.add_argument("--until", type=parse_moment, help="rows starting before this time (ISO 8601)")
        parser.add_argument(
            "--calibrated", action="store_true", help="apply each sensor's calibration (default: raw stored values)"
        )

    def handle(self, *args, **options) -> None:
        readings = RESOLUTIONS[options["resolution"]].objects.between(options["since"], options["until"])
        if options["sensor"]:
            try:
                readings = readings.for_sensor(Sensor.normalise_device_id(options["sensor"]))
            except ValidationError as exc:
                raise CommandError(exc.messages[0]) from exc
        if options["metric"]:
            readings = readings.for_metric(options["metric"])
        write = write_json if options["format"] == "json" else write_csv
        self.stdout.ending = ""  # the writers end their own lines
        try:
            write(export_rows(ordered_for_export(readings), options["calibrated"]), self.stdout)
        except BrokenPipeError:  # `| head`: the reader has seen enough
            pass
