"""Journal records back into batches: what the database does not hold yet, and nothing it does.

Plain Python with no Django import. A record's samples of minute M are applied only when the
record is newer than the database's mark for M (so nothing is counted twice) and no newer than
the replay's bound for M (samples after it are still in the collector's memory, and written
from there). The entries were accepted when they arrived, so no limit or gate applies again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .aggregator import Batch, minute_start
from .journal import RAW, SAMPLES, Record
from .protocol import Rejected, parse_firmware_block, parse_firmware_line, parse_line

logger = logging.getLogger(__name__)

MAX_REPLAY_BUCKETS = 50_000  # one replayed batch (one transaction) holds at most about this many


@dataclass
class Bounds:
    """How far a replay goes: every minute through `through`, and minute M through `minutes[M]`."""

    through: int = 0
    minutes: dict[int, int] = field(default_factory=dict)
    already_stored: int = 0  # entries a replay skipped because the database's marks say it has them

    def limit(self, minute: int) -> int:
        return max(self.through, self.minutes.get(minute, 0))

    def extend(self, marks: dict[int, int]) -> None:
        """Reach at least as far as a batch's `marks` (minute -> seq): what memory forgot of it."""
        for minute, seq in marks.items():
            if self.minutes.get(minute, 0) < seq:
                self.minutes[minute] = seq

    @property
    def newest(self) -> int:
        return max([self.through, *self.minutes.values()])


def encode_samples(mac: str, values: Iterable[tuple[str, float]]) -> bytes:
    """A SAMPLES entry: the values of a line that were accepted (repr keeps every float exact)."""
    return " ".join([mac, *(f"{metric}={value!r}" for metric, value in values)]).encode()


def entry_values(data: bytes, kind: int) -> Iterator[tuple[str, tuple[tuple[str, float], ...]]]:
    """(mac, values) of each line in an entry."""
    if kind == SAMPLES:
        mac, *pairs = data.decode().split(" ")
        yield mac, tuple((metric, float(value)) for metric, _, value in (pair.partition("=") for pair in pairs))
        return
    if kind != RAW:
        raise ValueError(f"unknown journal entry kind {kind}")
    columns = parse_firmware_block(data) if data.count(b"\n") > 1 else None
    if columns is not None:
        for mac, soil, temp, hum in zip(*columns, strict=True):
            yield mac, (("soil_moisture", soil), ("air_temperature", temp), ("humidity", hum))
        return
    for line in data.split(b"\n"):
        if not line:
            continue
        fields = parse_firmware_line(line)
        if fields is not None:
            mac, soil, temp, hum = fields
            yield mac, (("soil_moisture", soil), ("air_temperature", temp), ("humidity", hum))
            continue
        parsed = parse_line(line)
        if parsed is None or isinstance(parsed, Rejected):
            raise ValueError(f"a journaled line does not parse: {line[:80]!r}")
        yield parsed.mac, parsed.values


def batches(
    records: Iterable[Record],
    journal: str,
    marks: dict[int, int],
    bounds: Bounds,
    max_buckets: int = MAX_REPLAY_BUCKETS,
) -> Iterator[Batch]:
    """Batches of the samples the database lacks, in record order, each at most ~`max_buckets`.

    Each batch's `marks` say how far it reaches, so storing it moves the marks on
    and a replay started again after a failure skips what was stored.
    """
    batch = Batch(journal=journal)
    for record in records:
        for timestamp, peer, data, kind in record.entries:
            minute = minute_start(timestamp)
            if record.seq > bounds.limit(minute):
                continue  # still in memory: written from there
            if record.seq <= marks.get(minute, 0):
                bounds.already_stored += 1
                continue
            try:
                lines = list(entry_values(data, kind))
            except (ValueError, UnicodeDecodeError) as exc:
                logger.error("journal %s: record %d has an unreadable entry (%s); skipped", journal, record.seq, exc)
                continue
            for mac, values in lines:
                for metric, value in values:
                    batch.add(mac, metric, minute, value)
                batch.seen(mac, timestamp, peer)
            batch.marks[minute] = min(record.seq, bounds.limit(minute))
            batch.seq = record.seq
        if len(batch.buckets) >= max_buckets:
            yield batch
            batch = Batch(journal=journal)
    if batch:
        yield batch
