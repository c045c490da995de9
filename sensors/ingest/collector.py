"""The collector: listener (and MQTT source) -> parser -> aggregator -> writer, and its lifecycle.

No Django import: the `collect` management command builds a `Collector` with
the storage function and handles signals. TCP lines and MQTT messages are two sources
of the same samples: one aggregator, one journal, one writer, one stats line. The ingest loop runs in the calling
thread and is a sequence of small steps (`step`, `flush`, `report_stats`,
`shutdown`) that tests can call directly; the database is only touched by the
writer thread, so a slow database never stalls reading from the sensors.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .aggregator import Aggregator, Batch, RefusedSensor, minute_start
from .devices import Availability, MessageParser
from .journal import RAW, SAMPLES, Journal
from .listener import LineListener, Network
from .mqtt import Message, MqttSource
from .periodic import PeriodicThread
from .protocol import Reason, Rejected, parse_firmware_block, parse_firmware_line, parse_line
from .ratelimit import LogLimiter
from .replay import encode_samples
from .writer import Writer

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
MAX_REFUSED_PER_FLUSH = 1000  # distinct refused MACs kept for the admin per flush (a flood is counted, not listed)
# After a wakeup that took everything waiting, pause this long before the next poll so that
# the next one finds many sockets ready: 10,000 boards then cost ~200 wakeups a second instead
# of ~5,000 (each with its epoll_wait and bookkeeping). Samples are minute-bucketed, so 5 ms
# later does not matter; a busy collector (a full read, a full accept batch) never pauses.
COALESCE_SECONDS = 0.005


@dataclass(frozen=True)
class CollectorConfig:
    host: str = "0.0.0.0"
    port: int = 5555
    flush_interval: float = 5.0  # closed minutes are handed to the writer within this
    open_minute_interval: float = 30.0  # the minute still filling is written this often
    stats_interval: float = 60.0
    idle_timeout: float = 600.0
    line_timeout: float = 30.0  # a line must arrive whole within this (slow-loris peers)
    max_connections: int = 12000
    max_connections_per_address: int | None = None  # None: half of max_connections
    max_metrics_per_sensor: int = 16
    allowed_networks: Sequence[Network] = field(default_factory=tuple)  # empty: any
    reuse_port: bool = False  # several collector processes on one port (docs/collector.md)
    drain_seconds: float = 1.0
    coalesce_seconds: float = COALESCE_SECONDS
    # Below supervisor's stopwaitsecs (20) and above the SQLite busy timeout (5).
    shutdown_write_seconds: float = 12.0
    journal_sync_interval: float = 1.0  # what arrived is on disk within this (0: before the next read)
    live_interval: float = 2.0  # watched sensors' newest samples are written this often (rules react in seconds)


def _format_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in sorted(counts.items())) or "none"


class KnownSensors:
    """Which MACs may report: the sensors in the database always; a new one only within limits.

    `macs` (a set the ingest thread reads, swapped whole by the refresh thread, so ingest never
    waits for the database) holds the registered sensors plus those this process admitted since.
    With `register` (COLLECTOR_UNKNOWN_SENSORS=register) a new MAC is admitted while fewer than
    `max_new_per_minute` were admitted in the current minute and fewer than `max_sensors` are
    known in all; otherwise its lines are refused (counted by reason). Without `register` an
    unknown MAC is refused until it is added in the admin, seen within `interval` s.

    Until the first refresh succeeds (the database unreachable at start) nothing can be checked:
    every line is kept, and the limits apply from the first successful refresh on.
    """

    def __init__(
        self,
        loader: Callable[[], Iterable[str]],
        interval: float = 10.0,
        on_exit: Callable[[], None] | None = None,
        *,
        watched_loader: Callable[[], Iterable[str]] | None = None,
        register: bool = False,
        max_new_per_minute: int = 60,
        max_sensors: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loader = loader
        self.watched_loader = watched_loader
        self.watched: set[str] = set()  # sensors whose newest samples someone (control) wants within seconds
        self.register = register
        self.max_sensors = max_sensors
        self.macs: set[str] = set()
        self.loaded = False
        self._admitted: set[str] = set()  # new MACs this process let in (until the database has them)
        self._new_per_minute = LogLimiter(max_new_per_minute, 60.0, clock)  # the same windowed count
        self._thread = PeriodicThread("known-sensors", self.refresh, interval, on_exit)

    def refresh(self) -> bool:
        try:
            registered = set(self.loader())
        except Exception as exc:
            logger.warning("cannot refresh the registered sensors (%s); keeping %d known", exc, len(self.macs))
            return False
        self._admitted -= registered
        self.macs = registered | self._admitted
        self.loaded = True
        if self.watched_loader is not None:
            try:
                self.watched = set(self.watched_loader())
            except Exception as exc:
                logger.warning("cannot refresh the watched sensors (%s); keeping %d", exc, len(self.watched))
        return True

    def admit(self, mac: str) -> str | None:
        """None if `mac`'s lines may be stored, else the reason they are refused."""
        if mac in self.macs or not self.loaded:
            return None
        if not self.register:
            return Reason.UNKNOWN_SENSOR
        if len(self.macs) >= self.max_sensors:
            return Reason.TOO_MANY_SENSORS
        if not self._new_per_minute.allow("new sensor"):
            return Reason.TOO_MANY_NEW_SENSORS
        self._admitted.add(mac)
        self.macs.add(mac)
        return None

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._thread.request_stop()

    def stop(self) -> bool:
        return self._thread.stop()


class SideJob(Protocol):
    """A thread beside the ingest loop (periodic.PeriodicThread): started with it, stopped after its last write."""

    def start(self) -> None: ...

    def request_stop(self) -> None: ...

    def stop(self) -> bool: ...


class Collector:
    def __init__(
        self,
        config: CollectorConfig,
        writer: Writer,
        clock: Callable[[], float] = time.time,
        known_sensors: KnownSensors | None = None,
        side_jobs: Sequence[SideJob] = (),
        journal: Journal | None = None,
        mqtt: MqttSource | None = None,
    ) -> None:
        """`clock` stamps samples (wall time, UTC epoch seconds); `side_jobs` are threads that live
        as long as the collector (e.g. the retention purge); `journal` keeps what was accepted on disk
        until the database has it (the writer must have been given the same one); `mqtt`, a broker
        whose devices' messages are ingested beside the TCP lines."""
        self.config = config
        self.writer = writer
        self.journal = journal
        self.known_sensors = known_sensors  # None: every MAC is registered, without limits
        self.side_jobs: list[SideJob] = [*([known_sensors] if known_sensors is not None else []), *side_jobs]
        self.clock = clock
        self.aggregator = Aggregator(config.max_metrics_per_sensor)
        self.listener = LineListener(
            config.host,
            config.port,
            self.handle_block,
            max_connections=config.max_connections,
            max_connections_per_address=config.max_connections_per_address,
            idle_timeout=config.idle_timeout,
            line_timeout=config.line_timeout,
            clock=clock,
            allowed_networks=config.allowed_networks,
            reuse_port=config.reuse_port,
        )
        self.lines = 0
        self.samples = 0
        self.rejected_lines: Counter[str] = Counter()
        self.rejected_fields: Counter[str] = Counter()
        self.mqtt = mqtt
        self.parser = MessageParser(mqtt.config.max_payload) if mqtt is not None else MessageParser()
        self.messages = 0  # MQTT messages that gave samples
        self.mqtt_samples = 0
        self.retained_messages = 0  # replayed by the broker on subscribing: no sample (a new device is registered)
        self.rejected_messages: Counter[str] = Counter()
        self.rejected_message_fields: Counter[str] = Counter()
        self._log_limiter = LogLimiter()
        self._refused: dict[str, RefusedSensor] = {}
        self._stop_requested = False
        self.stop_reason = ""
        self._last_stats: dict = {}
        self._stats_time = 0.0
        self._next_flush = 0.0
        self._next_open_flush = 0.0
        self._next_stats = 0.0
        self._next_idle_sweep = 0.0
        self._next_cut = 0.0
        self._next_live = 0.0

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Bind (raises listener.BindError) and start the writer; return the bound address."""
        address = self.listener.bind()
        if self.journal is not None:
            self.journal.start()
        self.writer.start()
        for job in self.side_jobs:
            job.start()
        if self.mqtt is not None:
            self.mqtt.start()
        now = time.monotonic()
        self._next_flush = now + self.config.flush_interval
        self._next_open_flush = now + self.config.open_minute_interval
        self._next_stats = now + self.config.stats_interval
        self._next_idle_sweep = now + self._sweep_interval()
        self._next_cut = now + self.config.journal_sync_interval
        self._next_live = now + self.config.live_interval
        self._stats_time = now
        self._last_stats = self._stats_snapshot()
        return address

    def request_stop(self, reason: str = "stop requested") -> None:
        """Safe to call from a signal handler (only sets a flag): the loop notices within one poll."""
        self._stop_requested = True
        self.stop_reason = reason

    def run(self) -> None:
        while not self._stop_requested:
            self.step()
        logger.info("%s: stopping", self.stop_reason)

    def shutdown(self) -> int:
        """Stop accepting, read what has arrived, flush, wait for the writer, then stop the side jobs.

        The side jobs are told to stop first (a purge between two chunks ends there) but are only
        waited for after the final write, so none of them can push that write past supervisor's
        stopwaitsecs. Whatever fails while closing the sockets, what is held is still written.
        Returns the number of samples that could not be written (0 on a clean stop, -1: unknown).
        """
        for job in self.side_jobs:
            job.request_stop()
        try:
            self.listener.stop_accepting()
            self.listener.drain(self.config.drain_seconds)
        finally:
            try:
                self.listener.close_all()
                if self.mqtt is not None:  # what paho has acknowledged is ours to write: take it all
                    self.mqtt.stop()
                    self.handle_messages(self.mqtt.take())
            finally:
                self.flush()
                deadline = time.monotonic() + self.config.shutdown_write_seconds
                if self.journal is not None:
                    self.journal.sync(min(2.0, self.config.shutdown_write_seconds))
                lost = self.writer.finish(max(0.5, deadline - time.monotonic()))
                if self.journal is not None:
                    self.journal.stop()
                for job in self.side_jobs:
                    job.stop()
        self.report_stats()
        return lost

    # --- steps -----------------------------------------------------------------
    def step(self, timeout: float = POLL_SECONDS) -> None:
        if self.listener.poll(timeout) and not self.listener.saturated and self.config.coalesce_seconds:
            time.sleep(self.config.coalesce_seconds)
        if self.mqtt is not None and self.mqtt.pending:
            self.handle_messages(self.mqtt.take())
        now = time.monotonic()
        if self.journal is not None and now >= self._next_cut:
            self._next_cut = now + self.config.journal_sync_interval
            self.journal.cut()
        if now >= self._next_open_flush:
            self._next_open_flush = now + self.config.open_minute_interval
            self._next_flush = now + self.config.flush_interval
            self.flush()
        elif now >= self._next_flush:
            self._next_flush = now + self.config.flush_interval
            self.flush_closed()
        if now >= self._next_live:
            self._next_live = now + self.config.live_interval
            self.flush_live()
        if now >= self._next_stats:
            self._next_stats = now + self.config.stats_interval
            self.report_stats()
        if now >= self._next_idle_sweep:
            self._next_idle_sweep = now + self._sweep_interval()
            self.listener.close_idle()

    def handle_block(self, peer: str, block: bytes, timestamp: float) -> None:
        """Parse and aggregate the complete lines of one read, given as one block (the listener's callback).

        A block of firmware lines (the normal case) takes the fast path, with exactly the outcome
        of `handle_lines`; anything else (a bad or tolerated-variant line, a sensor whose metric
        limit must be checked, unknown sensors to reject) goes line by line through `handle_lines`.
        """
        if block.count(b"\n") == 1:  # one line per read: a board every 2 s, the normal case
            fields = parse_firmware_line(block[:-1])
            if (
                fields is not None
                and (
                    self.known_sensors is None
                    or fields[0] in self.known_sensors.macs
                    or self.known_sensors.admit(fields[0]) is None
                )
                and self.aggregator.add_firmware_line(*fields, timestamp, peer)
            ):
                self.lines += 1
                self.samples += 3
                if self.journal is not None:
                    self.journal.entries.append((timestamp, peer, block, RAW))
                return
            self.handle_lines(peer, [block[:-1]], timestamp)
            return
        columns = parse_firmware_block(block)
        if (
            columns is not None
            and (self.known_sensors is None or self.known_sensors.macs.issuperset(columns[0]))
            and self.aggregator.add_firmware_lines(*columns, timestamp, peer)
        ):
            self.lines += len(columns[0])
            self.samples += 3 * len(columns[0])
            if self.journal is not None:
                self.journal.entries.append((timestamp, peer, block, RAW))
            return
        lines = block.split(b"\n")
        lines.pop()  # the empty tail after the last "\n"
        self.handle_lines(peer, lines, timestamp)

    def handle_lines(self, peer: str, lines: list[bytes], timestamp: float) -> None:
        """Parse and aggregate complete lines one by one (what `handle_block` falls back to)."""
        for raw in lines:
            parsed = parse_line(raw)
            if parsed is None:
                continue
            if isinstance(parsed, Rejected):
                self._reject_line(peer, raw, parsed)
                continue
            reason = self._admission(parsed.mac, timestamp, peer)
            if reason is not None:
                self._reject_line(peer, raw, Rejected(reason))
                continue
            self.lines += 1
            refused = self._add(parsed.mac, parsed.values, timestamp, peer)
            self.samples += len(parsed.values) - refused
            if parsed.dropped:
                self.rejected_fields.update(parsed.dropped)
            if refused:
                self.rejected_fields[Reason.TOO_MANY_METRICS] += refused
                if refused == len(parsed.values):
                    self.lines -= 1
                    self._reject_line(peer, raw, Rejected(Reason.TOO_MANY_METRICS))

    def handle_messages(self, messages: list[Message]) -> None:
        """Parse and aggregate MQTT messages (from `MqttSource.take`), as `handle_lines` does TCP lines.

        A retained message (the broker's stored last value, sent when the collector subscribes) is
        no new sample and no sign the device is alive now: a device not registered yet is
        registered (it shows in the admin as never reported), nothing else. Availability (a last will, a birth
        message) is handed to the writer at once, so a device that went away shows offline within
        a write, not a minute.
        """
        availability: dict[str, tuple[float, bool]] = {}
        discovered: set[str] = set()
        for timestamp, topic, payload, retained in messages:
            parsed = self.parser.parse(topic, payload)
            if parsed is None:
                continue
            if isinstance(parsed, Rejected):
                self._reject_message(topic, payload, parsed, retained)
                continue
            if isinstance(parsed, Availability):
                availability[parsed.device] = (timestamp, parsed.online)
                continue
            device = parsed.mac
            if retained and self.known_sensors is not None and device in self.known_sensors.macs:
                self.retained_messages += 1  # a registered device's stored last value: nothing to do
                continue
            reason = self._admission(device, timestamp, "")
            if reason is not None:
                self._reject_message(topic, payload, Rejected(reason), retained)
                continue
            if parsed.dropped:
                self.rejected_message_fields.update(parsed.dropped)
            if retained:  # a new device known from its stored last value: registered, nothing more
                self.retained_messages += 1
                discovered.add(device)
                continue
            self.messages += 1
            refused = self._add(device, parsed.values, timestamp, "")
            self.mqtt_samples += len(parsed.values) - refused
            if refused:
                self.rejected_message_fields[Reason.TOO_MANY_METRICS] += refused
                if refused == len(parsed.values):
                    self.messages -= 1
                    self._reject_message(topic, payload, Rejected(Reason.TOO_MANY_METRICS), retained)
        if availability or discovered:
            self.writer.submit(Batch(availability=availability, discovered=discovered))

    def flush(self) -> None:
        """Hand every minute held, the open one included, to the writer (cheap: a swap)."""
        self.writer.submit(self._stamp(self._take_refused(self.aggregator.drain())))

    def flush_closed(self) -> None:
        """Hand the minutes that have ended to the writer; the open minute stays in memory.

        Every flush of the open minute rewrites one row per sensor and metric (30,000 rows at
        10,000 boards), so it is written every `open_minute_interval` only, while a minute that
        has ended is written within `flush_interval` and then never again.
        """
        self.writer.submit(self._stamp(self._take_refused(self.aggregator.drain_closed(minute_start(self.clock())))))

    def flush_live(self) -> None:
        """Hand the watched sensors' newest samples to the writer (the minutes themselves stay held)."""
        if self.known_sensors is not None and self.known_sensors.watched:
            self.writer.submit(self.aggregator.live_values(self.known_sensors.watched))

    def report_stats(self) -> None:
        """Log one line about the last interval: connections, rates, rejections, writes."""
        now = time.monotonic()
        elapsed = max(now - self._stats_time, 1e-9)
        current = self._stats_snapshot()
        previous = self._last_stats
        self._stats_time, self._last_stats = now, current
        listener = current["listener"] - previous["listener"]  # connection events in this interval
        logger.info(
            "stats: %d connections open, %.1f lines/s, %.1f samples/s, rejected lines: %s; "
            "rejected fields: %s; rows written: %d; buckets pending: %d; dropped over the pending bound: %d; "
            "connections opened %d, closed idle %d, closed slow lines %d, refused %d (network %d), "
            "refused per address %d, accept errors %d%s",
            self.listener.connection_count,
            (current["lines"] - previous["lines"]) / elapsed,
            (current["samples"] - previous["samples"]) / elapsed,
            _format_counts(current["rejected_lines"] - previous["rejected_lines"]),
            _format_counts(current["rejected_fields"] - previous["rejected_fields"]),
            current["rows"] - previous["rows"],
            self.aggregator.pending_buckets + self.writer.pending_buckets,
            current["dropped"] - previous["dropped"],
            listener["connections_opened"],
            listener["idle_closed"],
            listener["slow_line_closed"],
            listener["refused_max_connections"],
            listener["refused_network"],
            listener["refused_per_address"],
            listener["accept_errors"],
            self._journal_stats(),
        )
        if self.mqtt is not None:
            mqtt = current["mqtt"] - previous["mqtt"]
            logger.info(
                "stats mqtt: broker %s %s, %.1f messages/s, %.1f samples/s, retained (not stored) %d, "
                "rejected messages: %s; rejected fields: %s; reconnects %d, dropped over the queue bound %d, "
                "callback errors %d",
                self.mqtt.config.where,
                "connected" if self.mqtt.connected else "disconnected",
                mqtt["messages"] / elapsed,
                mqtt["samples"] / elapsed,
                mqtt["retained"],
                _format_counts(current["rejected_messages"] - previous["rejected_messages"]),
                _format_counts(current["rejected_message_fields"] - previous["rejected_message_fields"]),
                mqtt["disconnects"],
                mqtt["dropped_queue_full"],
                mqtt["callback_errors"],
            )

    def _journal_stats(self) -> str:
        journal = self.journal
        if journal is None:
            return ""
        return (
            f"; journal: {journal.bytes_written} bytes written, {journal.dropped_records} records not journaled, "
            f"{self.writer.forgotten_samples} samples left to it during outages"
        )

    def rejected_line_totals(self) -> Counter[str]:
        """Rejected lines by reason since start, framing rejections included."""
        totals = Counter(self.rejected_lines)
        for reason in (Reason.LINE_TOO_LONG, Reason.INCOMPLETE_LINE):
            if self.listener.counters[reason]:
                totals[reason] = self.listener.counters[reason]
        return totals

    # --- internals ---------------------------------------------------------------
    def _sweep_interval(self) -> float:
        """How often idle connections and unfinished lines are looked for."""
        return min(self.config.idle_timeout / 10, self.config.line_timeout / 3, 5.0)

    def _stats_snapshot(self) -> dict:
        """Totals since start; the stats line reports the difference between two snapshots."""
        return {
            "lines": self.lines,
            "samples": self.samples,
            "rows": self.writer.rows_written,
            "dropped": self.writer.dropped_samples,
            "rejected_lines": self.rejected_line_totals(),
            "rejected_fields": Counter(self.rejected_fields),
            "listener": Counter(self.listener.counters),
            "mqtt": Counter(
                messages=self.messages,
                samples=self.mqtt_samples,
                retained=self.retained_messages,
                **(self.mqtt.counters if self.mqtt is not None else {}),
            ),
            "rejected_messages": Counter(self.rejected_messages),
            "rejected_message_fields": Counter(self.rejected_message_fields),
        }

    def _admission(self, device: str, timestamp: float, peer: str) -> str | None:
        """None if `device` may report (known_sensors), else the reason, noted for the admin's refused list."""
        if self.known_sensors is None:
            return None
        reason = self.known_sensors.admit(device)
        if reason is not None:
            self._refuse_sensor(device, reason, timestamp, peer)
        return reason

    def _add(self, device: str, values: tuple[tuple[str, float], ...], timestamp: float, peer: str) -> int:
        """Aggregate a line's or a message's values and journal those accepted; return how many were
        refused as too many metrics (the slow path's; `handle_block` does the same in bulk)."""
        journal = self.journal
        accepted: list[tuple[str, float]] | None = [] if journal is not None else None
        refused = self.aggregator.add(device, values, timestamp, peer, accepted)
        if accepted and journal is not None:
            journal.entries.append((timestamp, peer, encode_samples(device, accepted), SAMPLES))
        return refused

    def _refuse_sensor(self, mac: str, reason: str, timestamp: float, peer: str) -> None:
        """Note a refused MAC for the admin's list (at most MAX_REFUSED_PER_FLUSH new ones per flush)."""
        known = self._refused.get(mac)
        if known is not None:
            known.lines += 1
            known.last, known.peer, known.reason = timestamp, peer, reason
        elif len(self._refused) < MAX_REFUSED_PER_FLUSH:
            self._refused[mac] = RefusedSensor(reason, 1, timestamp, timestamp, peer)

    def _stamp(self, batch: Batch) -> Batch:
        """Cut the journal's record here: the batch holds its minutes' samples of every record up to it."""
        if self.journal is not None:
            batch.journal, batch.seq = self.journal.id, self.journal.cut()
            batch.marks = dict.fromkeys(batch.marks, batch.seq)
        return batch

    def _take_refused(self, batch: Batch) -> Batch:
        """Hand the refused MACs noted since the last flush to the writer with `batch`."""
        if self._refused:
            batch.refused, self._refused = self._refused, {}
        return batch

    def _reject_message(self, topic: str, payload: bytes, rejected: Rejected, retained: bool) -> None:
        self.rejected_messages[rejected.reason] += 1
        if self._log_limiter.allow(f"mqtt {rejected.reason}"):
            logger.warning(
                "rejected MQTT message on %.120r%s (%s): %.120r",
                topic,
                " (retained)" if retained else "",
                rejected.reason,
                payload,
            )

    def _reject_line(self, peer: str, raw: bytes, rejected: Rejected) -> None:
        self.rejected_lines[rejected.reason] += 1
        if self._log_limiter.allow(rejected.reason):
            logger.warning("rejected line from %s (%s): %.120r", peer, rejected.reason, raw)
