"""Per-minute aggregation of samples in memory, between two flushes.

Plain Python with no Django import. A `Batch` holds count/sum/min/max per
(sensor MAC, metric, UTC minute) and when each sensor was seen. Batches merge
associatively, which is what lets the writer put a failed batch back, and what
makes "any split of the stream gives the same totals" true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

BucketKey = tuple[str, str, int]  # (mac, metric, minute start as epoch seconds)


def minute_start(timestamp: float) -> int:
    """The UTC minute a sample belongs to, as epoch seconds."""
    return int(timestamp // 60) * 60


class Bucket:
    """count/sum/min/max of one metric of one sensor in one minute."""

    __slots__ = ("count", "high", "low", "total")

    def __init__(self, value: float) -> None:
        self.count = 1
        self.total = value
        self.low = value
        self.high = value

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        elif value > self.high:
            self.high = value

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    @property
    def mean(self) -> float:
        return self.total / self.count

    def __repr__(self) -> str:
        return f"Bucket(count={self.count}, total={self.total}, low={self.low}, high={self.high})"


@dataclass(slots=True)
class SensorSeen:
    """When a sensor was first and last heard from in a batch, and from where."""

    first_seen: float
    last_seen: float
    peer: str

    def merge(self, other: SensorSeen) -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen >= self.last_seen:
            self.last_seen = other.last_seen
            self.peer = other.peer


@dataclass(slots=True)
class Batch:
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    sensors: dict[str, SensorSeen] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sensors)

    @property
    def sample_count(self) -> int:
        return sum(bucket.count for bucket in self.buckets.values())

    def add(self, mac: str, metric: str, minute: int, value: float) -> None:
        key = (mac, metric, minute)
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = Bucket(value)
        else:
            bucket.add(value)

    def seen(self, mac: str, timestamp: float, peer: str) -> None:
        seen = self.sensors.get(mac)
        if seen is None:
            self.sensors[mac] = SensorSeen(timestamp, timestamp, peer)
        elif timestamp >= seen.last_seen:
            seen.last_seen = timestamp
            seen.peer = peer
        elif timestamp < seen.first_seen:  # the system clock was set back
            seen.first_seen = timestamp

    def merge(self, other: Batch, max_buckets: int | None = None) -> int:
        """Add `other` into this batch; `other` must not be used afterwards.

        With `max_buckets`, buckets that would grow the batch beyond it are dropped;
        returns the number of samples dropped (0 when everything fitted).
        """
        dropped = 0
        for key, bucket in other.buckets.items():
            mine = self.buckets.get(key)
            if mine is not None:
                mine.merge(bucket)
            elif max_buckets is not None and len(self.buckets) >= max_buckets:
                dropped += bucket.count
            else:
                self.buckets[key] = bucket
        for mac, seen in other.sensors.items():
            mine_seen = self.sensors.get(mac)
            if mine_seen is None:
                self.sensors[mac] = seen
            else:
                mine_seen.merge(seen)
        return dropped


def coarsen(buckets: Iterable[tuple[BucketKey, Bucket]], seconds: int) -> dict[BucketKey, Bucket]:
    """The same samples re-keyed to `seconds`-long intervals (hours, days), merged; inputs untouched.

    This is how rollups stay exact: an hour is the merge of its minutes, so the
    rollup of a batch can be added to a stored hour just like a minute is.
    """
    coarse: dict[BucketKey, Bucket] = {}
    for (mac, metric, start), bucket in buckets:
        key = (mac, metric, start - start % seconds)
        mine = coarse.get(key)
        if mine is None:
            mine = coarse[key] = Bucket(bucket.low)
            mine.count, mine.total, mine.high = bucket.count, bucket.total, bucket.high
        else:
            mine.merge(bucket)
    return coarse


class Aggregator:
    """Collects samples into the current batch; `drain` hands it over for writing.

    Enforces the bound on distinct metrics per sensor (for this process's life),
    so a board sending a new random key every line cannot grow memory or the
    database without limit.
    """

    # Forget the per-sensor metric sets beyond this many sensors, so a client
    # inventing a new MAC on every line cannot grow this memory without bound.
    MAX_TRACKED_SENSORS = 100_000

    def __init__(self, max_metrics_per_sensor: int = 16) -> None:
        self.max_metrics_per_sensor = max_metrics_per_sensor
        self._batch = Batch()
        self._metrics: dict[str, set[str]] = {}

    def add(self, mac: str, values: tuple[tuple[str, float], ...], timestamp: float, peer: str) -> int:
        """Add one line's values; return how many were refused as too many metrics."""
        minute = minute_start(timestamp)
        known = self._metrics.get(mac)
        if known is None:
            if len(self._metrics) >= self.MAX_TRACKED_SENSORS:
                self._metrics.clear()
            known = self._metrics[mac] = set()
        refused = 0
        batch = self._batch
        for metric, value in values:
            if metric not in known:
                if len(known) >= self.max_metrics_per_sensor:
                    refused += 1
                    continue
                known.add(metric)
            batch.add(mac, metric, minute, value)
        if refused < len(values):
            batch.seen(mac, timestamp, peer)
        return refused

    def drain(self) -> Batch:
        """Return everything aggregated so far and start a new, empty batch."""
        batch, self._batch = self._batch, Batch()
        return batch

    @property
    def pending_buckets(self) -> int:
        return len(self._batch.buckets)
