"""Readings as rows for spreadsheets and pandas: CSV and JSON at full precision.

Numbers are written as Python's shortest exact repr of the stored floats, so a
mean multiplied back by `samples` gives the stored sum.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import IO

from .expressions import EpochStep
from .metrics import calibrated_band
from .models import Placement, Sensor

COLUMNS = ["sensor", "sensor_name", "location", "metric", "start", "samples", "mean", "min", "max"]


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC (stored times are UTC). Raises ValueError."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, like 2026-11-24T10:15:00Z.

    Formatted field by field: strftime cost a tenth of a 7-day chart's request (one call per point).
    """
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def format_epoch(seconds: int) -> str:
    """`format_time` of an epoch second, as the exports read their times (see `ordered_for_export`)."""
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


Row = tuple  # the values of COLUMNS, in that order

# `start` read as epoch seconds: see ordered_for_export.
EXPORT_FIELDS = ("sensor_id", "metric", EpochStep("start", 1), "samples", "value_sum", "value_min", "value_max")


class _Places:
    """Where each sensor stood when: its placements, read once per sensor (not a subquery per row)."""

    def __init__(self) -> None:
        self._by_sensor: dict[int, list[tuple[float, float, str]]] = {}

    def load(self, sensor_id: int) -> None:
        """The sensor's placements, newest first, their bounds as epoch seconds (no end: never)."""
        self._by_sensor[sensor_id] = [
            (start.timestamp(), math.inf if end is None else end.timestamp(), name)
            for start, end, name in Placement.objects.filter(sensor_id=sensor_id)
            .order_by("-start")
            .values_list("start", "end", "location__name")
        ]

    def at(self, sensor_id: int, moment: int) -> str:
        """The location's name at epoch second `moment` (the newest placement begun and not ended), or ""."""
        for start, end, name in self._by_sensor.get(sensor_id, ()):
            if start <= moment < end:
                return name
        return ""


def export_rows(readings: Iterable[tuple], calibrated: bool = False) -> Iterator[Row]:
    """Rows (COLUMNS order) of `ordered_for_export` readings; `calibrated` applies each sensor's calibration.

    Plain tuples from `values_list`, each sensor and its placements read once, each minute's time
    formatted once: a month of minutes is ~130,000 rows, and model instances per row cost most of it.
    """
    sensors: dict[int, Sensor] = {}
    places = _Places()
    # Each sensor's metric's calibration as a function (None: it changes nothing), bound once.
    calibrators: dict[tuple[int, str], Callable[[float], float] | None] = {}
    last_start: int | None = None
    start_text = ""
    for sensor_id, metric, start, samples, total, low, high in readings:
        sensor = sensors.get(sensor_id)
        if sensor is None:
            sensor = sensors[sensor_id] = Sensor.objects.get(pk=sensor_id)
            places.load(sensor_id)
        mean = total / samples
        if calibrated:
            key = (sensor_id, metric)
            if key not in calibrators:
                calibrators[key] = sensor.calibrator_if_any(metric)
            if (calibrate := calibrators[key]) is not None:
                mean, low, high = calibrated_band(calibrate, mean, low, high)
        if start != last_start:
            last_start, start_text = start, format_epoch(start)
        yield (sensor.device_id, sensor.name, places.at(sensor_id, start), metric, start_text, samples, mean, low, high)


def ordered_for_export(queryset) -> Iterator[tuple]:
    """Time order, then sensor and metric, as `EXPORT_FIELDS` tuples, streamed in chunks (memory stays flat).

    The start comes as epoch seconds: a datetime per row through Django's time-zone-aware loader
    (pure Python on PostgreSQL) or its SQLite text converter was a third of a month's download.
    """
    return (
        queryset.order_by("start", "sensor__device_id", "metric").values_list(*EXPORT_FIELDS).iterator(chunk_size=2000)
    )


class _Line:
    """A file-like object whose write returns what it was given: csv.writer then yields text, not I/O."""

    def write(self, text: str) -> str:
        return text


LINES_PER_PIECE = 500  # ~35 kB of CSV


def csv_pieces(rows: Iterable[Row], lines: int = LINES_PER_PIECE) -> Iterator[str]:
    """The CSV of `rows` for a streamed download: the header at once, then `lines` lines a piece.

    Memory stays flat. Each piece is one write to the socket (and one chunk of the HTTP
    response): a piece per line cost a system call per row, which took a core for seconds on
    a 30-day download and slowed the pages served beside it (docs/benchmarks.md).
    """
    writer = csv.writer(_Line(), lineterminator="\n")
    yield writer.writerow(COLUMNS)
    rows = iter(rows)
    while piece := "".join(map(writer.writerow, islice(rows, lines))):
        yield piece


def write_csv(rows: Iterable[Row], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_json(rows: Iterable[Row], out: IO[str]) -> int:
    """A JSON array of objects, written row by row (never the whole export in memory)."""
    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(dict(zip(COLUMNS, row, strict=True))))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
