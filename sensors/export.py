"""Readings as rows for spreadsheets and pandas: CSV and JSON at full precision.

Numbers are written as Python's shortest exact repr of the stored floats, so a
mean multiplied back by `samples` gives the stored sum.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from .models import Reading

COLUMNS = ["sensor", "sensor_name", "location", "metric", "start", "samples", "mean", "min", "max"]


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC (stored times are UTC). Raises ValueError."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, like 2026-11-24T10:15:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_rows(readings: Iterable[Reading], calibrated: bool = False) -> Iterator[dict[str, Any]]:
    """Rows of `ordered_for_export` readings; `calibrated` applies each sensor's calibration."""
    for reading in readings:
        sensor = reading.sensor
        mean, low, high = reading.mean, reading.value_min, reading.value_max
        if calibrated:
            mean, low, high = sensor.calibrate_band(reading.metric, mean, low, high)
        yield {
            "sensor": sensor.mac,
            "sensor_name": sensor.name,
            "location": reading.location_name or "",
            "metric": reading.metric,
            "start": format_time(reading.start),
            "samples": reading.samples,
            "mean": mean,
            "min": low,
            "max": high,
        }


def ordered_for_export(queryset) -> Iterator[Reading]:
    """Time order, then sensor and metric, with the location the sensor stood in at that minute.

    Streamed in chunks to keep memory flat.
    """
    return (
        queryset.with_location_name()
        .select_related("sensor")
        .order_by("start", "sensor__mac", "metric")
        .iterator(chunk_size=2000)
    )


class _Line:
    """A file-like object whose write returns what it was given: csv.writer then yields text, not I/O."""

    def write(self, text: str) -> str:
        return text


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The CSV of `rows` line by line, header first (for a streamed download: memory stays flat)."""
    writer = csv.DictWriter(_Line(), fieldnames=COLUMNS, lineterminator="\n")
    yield writer.writeheader()
    for row in rows:
        yield writer.writerow(row)


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_json(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A JSON array of objects, written row by row (never the whole export in memory)."""
    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(row))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
