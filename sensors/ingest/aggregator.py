"""Per-minute aggregation of samples in memory, between two flushes.

Plain Python with no Django import. A `Batch` holds count/sum/min/max per
(sensor MAC, metric, UTC minute) and when each sensor was seen. Batches merge
associatively, which is what lets the writer put a failed batch back, and what
makes "any split of the stream gives the same totals" true.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensors.metrics import FIRMWARE_LINE

BucketKey = tuple[str, str, int]  # (mac, metric, minute start as epoch seconds)


def minute_start(timestamp: float) -> int:
    """The UTC minute a sample belongs to, as epoch seconds."""
    return int(timestamp // 60) * 60


class Bucket:
    """count/sum/min/max of one metric of one sensor in one minute."""

    __slots__ = ("count", "high", "last", "low", "total")

    def __init__(self, value: float) -> None:
        self.count = 1
        self.total = value
        self.low = value
        self.high = value
        self.last = value  # the newest sample: what a rule that reacts in seconds reads (LiveReading)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.last = value
        if value < self.low:
            self.low = value
        elif value > self.high:
            self.high = value

    def add_many(self, values: list[float]) -> None:
        """`add` each value in turn (the same sum, in the same order, in C loops)."""
        self.count += len(values)
        self.total = sum(values, self.total)
        self.last = values[-1]
        low, high = min(values), max(values)
        if low < self.low:
            self.low = low
        if high > self.high:
            self.high = high

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        self.total += other.total
        self.last = other.last  # `other` holds the later samples
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
class RefusedSensor:
    """Lines of a MAC the collector would not register (limits, or an unknown sensor), for the admin."""

    reason: str
    lines: int
    first: float
    last: float
    peer: str

    def merge(self, other: RefusedSensor) -> None:
        self.lines += other.lines
        self.first = min(self.first, other.first)
        if other.last >= self.last:
            self.last, self.peer, self.reason = other.last, other.peer, other.reason


@dataclass(slots=True, frozen=True)
class LiveValue:
    """A watched sensor's newest sample of one metric, and its minute so far."""

    value: float
    received_at: float
    minute: int
    samples: int  # held here (not yet in the database) of `minute` and the minute before it


@dataclass(slots=True)
class Batch:
    """Buckets to merge into the database, and with a journal, how far into it they reach.

    `marks` maps each minute to the newest journal record whose samples of that minute are all
    in this batch or stored before it: the database keeps it as that minute's mark, in the same
    transaction (see journal.py). `seq` is the newest record the batch reaches; `complete`:
    nothing else was held when it was drained, so once it is stored every record up to `seq`
    is in the database.
    """

    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    sensors: dict[str, SensorSeen] = field(default_factory=dict)
    refused: dict[str, RefusedSensor] = field(default_factory=dict)
    journal: str | None = None
    seq: int = 0
    marks: dict[int, int] = field(default_factory=dict)
    complete: bool = False
    keep_marks_from: int = 0  # the writer's hint: marks of minutes before this may be deleted
    # The newest sample of watched sensors, (mac, metric) -> LiveValue: overwritten, never merged
    # into the minutes (they are written from the buckets as usual); see storage.merge_live.
    live: dict[tuple[str, str], LiveValue] = field(default_factory=dict)
    # What MQTT devices said of themselves (a last will "offline", a birth "online"), the newest
    # per device: device -> (when, online). Stored as Sensor.offline_since, for known sensors only.
    availability: dict[str, tuple[float, bool]] = field(default_factory=dict)
    # Devices known only from a retained message: registered if new, with no sample and no
    # "last seen" (a stored value is no sign the device is alive now).
    discovered: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return any((self.sensors, self.refused, self.live, self.availability, self.discovered))

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
        self.seq = max(self.seq, other.seq)
        for minute, seq in other.marks.items():
            if self.marks.get(minute, 0) < seq:
                self.marks[minute] = seq
        if other.buckets or other.marks or other.seq:  # a drain (not live values alone)
            self.complete = other.complete  # batches merge in the order they were drained
        self.journal = self.journal or other.journal
        for key, bucket in other.buckets.items():
            mine = self.buckets.get(key)
            if mine is not None:
                mine.merge(bucket)
            elif max_buckets is not None and len(self.buckets) >= max_buckets:
                dropped += bucket.count
            else:
                self.buckets[key] = bucket
        for key, value in other.live.items():
            known = self.live.get(key)
            if known is None or value.received_at >= known.received_at:
                self.live[key] = value
        self.discovered |= other.discovered
        for device, said in other.availability.items():
            known_state = self.availability.get(device)
            if known_state is None or said[0] >= known_state[0]:
                self.availability[device] = said
        for mine, theirs in ((self.sensors, other.sensors), (self.refused, other.refused)):
            for mac, entry in theirs.items():
                known = mine.get(mac)
                if known is None:
                    mine[mac] = entry
                else:
                    known.merge(entry)
        return dropped


_FIRMWARE_SET = frozenset(FIRMWARE_LINE)
_NONE: frozenset[str] = frozenset()


class Aggregator:
    """Collects samples into per-minute batches; `drain` hands them over for writing.

    Enforces the bound on distinct metrics per sensor (for this process's life),
    so a board sending a new random key every line cannot grow memory or the
    database without limit. Samples are kept per UTC minute so that the closed
    minutes can be handed over on their own (`drain_closed`) while the minute
    still filling is written less often.
    """

    # Forget the per-sensor metric sets beyond this many sensors, so a client
    # inventing a new MAC on every line cannot grow this memory without bound.
    MAX_TRACKED_SENSORS = 100_000

    def __init__(self, max_metrics_per_sensor: int = 16) -> None:
        self.max_metrics_per_sensor = max_metrics_per_sensor
        self._minutes: dict[int, Batch] = {}
        self._metrics: dict[str, set[str]] = {}
        # The minute last added to and, for it, each sensor's three firmware buckets: the
        # firmware fast path updates them without building keys. Cleared on every drain, as
        # drained buckets belong to the writer thread from then on.
        self._minute: int | None = None
        self._batch: Batch | None = None
        self._trios: dict[str, tuple[Bucket, Bucket, Bucket]] = {}

    def seed_metrics(self, known: dict[str, set[str]]) -> None:
        """The metrics each sensor has stored already (at start): the per-sensor limit holds across restarts."""
        for mac, metrics in known.items():
            self._metrics.setdefault(mac, set()).update(metrics)

    def _batch_for(self, minute: int) -> Batch:
        if minute != self._minute or self._batch is None:
            batch = self._minutes.get(minute)
            if batch is None:
                batch = self._minutes[minute] = Batch()
            self._minute, self._batch, self._trios = minute, batch, {}
        return self._batch

    def add(
        self,
        mac: str,
        values: tuple[tuple[str, float], ...],
        timestamp: float,
        peer: str,
        accepted: list[tuple[str, float]] | None = None,
    ) -> int:
        """Add one line's values; return how many were refused as too many metrics.

        `accepted`, if given, gets the values that were added (what the journal records)."""
        minute = minute_start(timestamp)
        known = self._metrics.get(mac)
        if known is None:
            if len(self._metrics) >= self.MAX_TRACKED_SENSORS:
                self._metrics.clear()
            known = self._metrics[mac] = set()
        refused = 0
        batch = self._batch_for(minute)
        for metric, value in values:
            if metric not in known:
                if len(known) >= self.max_metrics_per_sensor:
                    refused += 1
                    continue
                known.add(metric)
            batch.add(mac, metric, minute, value)
            if accepted is not None:
                accepted.append((metric, value))
        if refused < len(values):
            batch.seen(mac, timestamp, peer)
        return refused

    def add_firmware_line(self, mac: str, soil: float, temp: float, hum: float, timestamp: float, peer: str) -> bool:
        """One firmware line (see protocol.parse_firmware_line); False, adding nothing, as `add_firmware_lines`."""
        minute = int(timestamp // 60) * 60
        batch = self._batch if minute == self._minute and self._batch is not None else self._batch_for(minute)
        trio = self._trios.get(mac)
        if trio is None:
            if not _FIRMWARE_SET <= self._metrics.get(mac, _NONE):
                return False
            self._trios[mac] = self._trio(batch, mac, minute, soil, temp, hum)
        else:
            trio[0].add(soil)
            trio[1].add(temp)
            trio[2].add(hum)
        # Batch.seen, inlined: this runs once per line on the fast path. Keep the two alike.
        seen = batch.sensors.get(mac)
        if seen is None:
            batch.sensors[mac] = SensorSeen(timestamp, timestamp, peer)
        elif timestamp >= seen.last_seen:
            seen.last_seen = timestamp
            seen.peer = peer
        elif timestamp < seen.first_seen:
            seen.first_seen = timestamp
        return True

    def add_firmware_lines(
        self,
        macs: tuple[str, ...],
        soils: list[float],
        temps: list[float],
        hums: list[float],
        timestamp: float,
        peer: str,
    ) -> bool:
        """Add firmware lines given as columns (see protocol.parse_firmware_block), or return False.

        The same outcome as `add` with ``(("soil_moisture", soil), ("air_temperature", temp),
        ("humidity", hum))`` for each line in order, in far fewer Python steps: one sensor's lines
        (the usual read) are added with C loops, several sensors' line by line through cached
        buckets. Returns False, adding nothing, when a sensor has not sent all three metrics
        before (its metric limit must be checked line by line with `add`).
        """
        metrics = self._metrics
        if macs.count(macs[0]) == len(macs):  # one board's lines, the normal case
            mac = macs[0]
            if not _FIRMWARE_SET <= metrics.get(mac, _NONE):
                return False
            minute = minute_start(timestamp)
            batch = self._batch_for(minute)
            buckets = batch.buckets
            for metric, values in zip(FIRMWARE_LINE, (soils, temps, hums), strict=True):
                key = (mac, metric, minute)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = Bucket(values[0])
                    if len(values) > 1:
                        bucket.add_many(values[1:])
                else:
                    bucket.add_many(values)
            batch.seen(mac, timestamp, peer)
            return True
        # Lines of many sensors in one read (a gateway, or the burst benchmark).
        minute = minute_start(timestamp)
        batch = self._batch_for(minute)
        trios = self._trios
        distinct = set(macs)
        # A sensor with buckets cached in this minute passed the check already.
        if not all(_FIRMWARE_SET <= metrics.get(mac, _NONE) for mac in distinct.difference(trios)):
            return False
        for mac, soil, temp, hum in zip(macs, soils, temps, hums, strict=True):
            trio = trios.get(mac)
            if trio is None:
                trios[mac] = self._trio(batch, mac, minute, soil, temp, hum)
                continue
            trio[0].add(soil)
            trio[1].add(temp)
            trio[2].add(hum)
        sensors = batch.sensors
        for mac in distinct:  # Batch.seen, inlined
            seen = sensors.get(mac)
            if seen is None:
                sensors[mac] = SensorSeen(timestamp, timestamp, peer)
            elif timestamp >= seen.last_seen:
                seen.last_seen = timestamp
                seen.peer = peer
            elif timestamp < seen.first_seen:
                seen.first_seen = timestamp
        return True

    @staticmethod
    def _trio(batch: Batch, mac: str, minute: int, soil: float, temp: float, hum: float) -> tuple:
        """The sensor's three buckets of the minute, the given values added."""
        trio = []
        for metric, value in zip(FIRMWARE_LINE, (soil, temp, hum), strict=True):
            bucket = batch.buckets.get((mac, metric, minute))
            if bucket is None:
                bucket = batch.buckets[(mac, metric, minute)] = Bucket(value)
            else:
                bucket.add(value)
            trio.append(bucket)
        return tuple(trio)

    def drain(self) -> Batch:
        """Return everything aggregated so far and start anew."""
        return self._take(list(self._minutes))

    def drain_closed(self, current_minute: int) -> Batch:
        """Return the minutes before `current_minute` (closed: no sample will join them)."""
        return self._take([minute for minute in self._minutes if minute < current_minute])

    def _take(self, minutes: list[int]) -> Batch:
        self._minute, self._batch, self._trios = None, None, {}
        if not minutes:
            return Batch(complete=not self._minutes)
        batch = self._minutes.pop(minutes[0])
        for minute in minutes[1:]:
            batch.merge(self._minutes.pop(minute))
        batch.marks = dict.fromkeys(minutes, 0)  # the collector fills in the journal's seq
        batch.complete = not self._minutes
        return batch

    def live_values(self, macs: set[str]) -> Batch:
        """A batch of the newest sample of each metric of `macs` (watched sensors) held here, and when
        each sensor was last seen: the collector writes it every few seconds, the minutes stay put."""
        live = Batch()
        if not macs:
            return live
        for minute in sorted(self._minutes):
            batch = self._minutes[minute]
            for mac in macs.intersection(batch.sensors):
                seen = batch.sensors[mac]
                live.sensors[mac] = SensorSeen(seen.first_seen, seen.last_seen, seen.peer)
                for metric in self._metrics.get(mac, ()):
                    bucket = batch.buckets.get((mac, metric, minute))
                    if bucket is None:
                        continue
                    earlier = live.live.get((mac, metric))
                    held = bucket.count + (earlier.samples if earlier and earlier.minute == minute - 60 else 0)
                    live.live[(mac, metric)] = LiveValue(bucket.last, seen.last_seen, minute, held)
        return live

    @property
    def minutes(self) -> list[int]:
        """The minutes holding samples not yet drained."""
        return sorted(self._minutes)

    @property
    def pending_buckets(self) -> int:
        return sum(len(batch.buckets) for batch in self._minutes.values())
