"""python manage.py collect: receive sensor lines over TCP and store per-minute readings."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import time
from collections.abc import Callable

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, connections

from greenhouse_site.startup import raise_file_limit, require_migrated
from sensors import storage
from sensors.ingest import replay
from sensors.ingest.collector import Collector, CollectorConfig, KnownSensors
from sensors.ingest.devices import DEFAULT_TOPICS
from sensors.ingest.journal import Journal, JournalError, retire
from sensors.ingest.listener import BindError
from sensors.ingest.mqtt import MqttConfig, MqttSource
from sensors.ingest.writer import Writer
from sensors.retention import RetentionThread

logger = logging.getLogger("sensors.collect")

# A long replay (days of an outage) must not keep the boards out: after this, listen and let the
# writer thread finish it.
REPLAY_BEFORE_LISTENING_SECONDS = 15.0


def offset_clock(start: float) -> Callable[[], float]:
    """Wall time running at the real pace from `start` (the tests' way to pick the minute samples fall in)."""
    offset = start - time.time()
    return lambda: time.time() + offset


class Command(BaseCommand):
    help = "Listen for greenhouse sensor boards and store their readings per minute."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default=settings.COLLECTOR_HOST, help="address to listen on (default %(default)s)"
        )
        parser.add_argument(
            "--port",
            type=int,
            default=settings.COLLECTOR_PORT,
            help="TCP port; 0 picks a free one (default %(default)s)",
        )
        parser.add_argument(
            "--flush-interval",
            type=float,
            default=settings.COLLECTOR_FLUSH_INTERVAL,
            help="a minute that has ended is written within this many seconds (default %(default)s)",
        )
        parser.add_argument(
            "--open-minute-interval",
            type=float,
            default=settings.COLLECTOR_OPEN_MINUTE_INTERVAL,
            help="seconds between writes of the minute still filling (default %(default)s)",
        )
        parser.add_argument(
            "--stats-interval",
            type=float,
            default=settings.COLLECTOR_STATS_INTERVAL,
            help="seconds between stats log lines (default %(default)s)",
        )
        parser.add_argument(
            "--idle-timeout",
            type=float,
            default=settings.COLLECTOR_IDLE_TIMEOUT,
            help="close a connection silent for this many seconds (default %(default)s)",
        )
        parser.add_argument(
            "--max-connections",
            type=int,
            default=settings.COLLECTOR_MAX_CONNECTIONS,
            help="refuse connections beyond this many (default %(default)s)",
        )

        parser.add_argument(
            "--reuse-port",
            action=argparse.BooleanOptionalAction,
            default=settings.COLLECTOR_REUSE_PORT,
            help="share the port with other collectors started with it, one per core (default %(default)s)",
        )
        parser.add_argument(
            "--test-clock-start",
            type=float,
            default=None,
            metavar="EPOCH",
            help="testing only: stamp samples as if this process had started at EPOCH (UTC seconds), "
            "so a test knows which minute its samples fall in",
        )

    def handle(self, *args, **options) -> None:
        for name in ("flush_interval", "open_minute_interval", "stats_interval", "idle_timeout"):
            if options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be a positive number of seconds")
        if not 0 <= options["port"] <= 65535:
            raise CommandError(f"--port {options['port']} is not a TCP port (0-65535)")
        if options["max_connections"] < 1:
            raise CommandError("--max-connections must be at least 1")
        require_migrated(logger, "readings are kept in memory until it is back")
        raise_file_limit(options["max_connections"] + 64)

        config = CollectorConfig(
            host=options["host"],
            port=options["port"],
            flush_interval=options["flush_interval"],
            open_minute_interval=options["open_minute_interval"],
            stats_interval=options["stats_interval"],
            idle_timeout=options["idle_timeout"],
            max_connections=options["max_connections"],
            max_connections_per_address=settings.COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS or None,
            line_timeout=settings.COLLECTOR_LINE_TIMEOUT,
            max_metrics_per_sensor=settings.COLLECTOR_MAX_METRICS_PER_SENSOR,
            allowed_networks=[ipaddress.ip_network(cidr, strict=False) for cidr in settings.COLLECTOR_ALLOWED_NETWORKS],
            reuse_port=options["reuse_port"],
            journal_sync_interval=settings.COLLECTOR_JOURNAL_SYNC_INTERVAL,
            live_interval=settings.COLLECTOR_LIVE_INTERVAL,
        )
        journal = self.open_journal()
        # Each thread that uses the database opens its own connection and closes it as it ends
        # (connections.close_all closes the calling thread's): the writer, the known-sensors refresh
        # and the retention purge. The main thread only reads sockets.
        writer = Writer(
            storage.write_batch,
            journal=journal,
            load_marks=storage.journal_marks,
            on_exit=connections.close_all,
            max_pending_buckets=settings.COLLECTOR_MAX_PENDING_BUCKETS,
            outage_errors=(DatabaseError,),
            replay_buckets=settings.COLLECTOR_JOURNAL_REPLAY_BUCKETS,
        )
        # Which MACs may report: registered sensors, and new ones within the registration limits
        # (or none in reject mode). Refreshed from the database every 10 s in a thread of its own.
        known = KnownSensors(
            storage.registered_macs,
            on_exit=connections.close_all,
            watched_loader=storage.watched_macs,
            register=settings.COLLECTOR_UNKNOWN_SENSORS == "register",
            max_new_per_minute=settings.COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE,
            max_sensors=settings.COLLECTOR_MAX_SENSORS,
        )
        known.refresh()  # before the first line arrives
        retention = RetentionThread(settings.MINUTE_RETENTION_DAYS)
        clock = time.time
        if options["test_clock_start"] is not None:
            clock = offset_clock(options["test_clock_start"])
            logger.warning("testing clock: samples are stamped from %s on", options["test_clock_start"])
        mqtt = self.mqtt_source(clock)
        collector = Collector(
            config, writer, clock=clock, known_sensors=known, side_jobs=[retention], journal=journal, mqtt=mqtt
        )
        if journal is not None:
            self.replay_earlier_run(writer, journal)
        try:  # the metric limit counts what is stored, so a restart does not start it over
            collector.aggregator.seed_metrics(storage.stored_metrics())
        except DatabaseError as exc:
            logger.warning("cannot read the stored metrics (%s); the per-sensor limit counts from now", exc)
        vendor = connection.vendor
        connections.close_all()  # the main thread's, opened by the start-up checks
        try:
            host, port = collector.start()
        except BindError as exc:
            raise CommandError(str(exc)) from exc

        def stop(signum: int, frame: object) -> None:
            collector.request_stop(f"received {signal.Signals(signum).name}")  # no I/O in a signal handler

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info(
            "collector listening on %s:%d (ended minutes written within %gs, the open minute every %gs, "
            "%s, database %s, unknown sensors: %s, networks: %s%s%s)",
            host,
            port,
            config.flush_interval,
            config.open_minute_interval,
            f"journal {journal.directory} synced every {config.journal_sync_interval:g}s"
            if journal is not None
            else "no journal",
            vendor,
            settings.COLLECTOR_UNKNOWN_SENSORS,
            ", ".join(settings.COLLECTOR_ALLOWED_NETWORKS) or "any",
            ", port shared with other collectors (--reuse-port)" if config.reuse_port else "",
            f", MQTT broker {mqtt.config.where}" if mqtt is not None else "",
        )
        try:
            collector.run()
        finally:  # even after an unexpected error, write what is held before exiting
            lost = collector.shutdown()
        if writer.behind and journal is not None:
            logger.warning(
                "the database does not have everything yet: the journal %s keeps it and the next start writes it",
                journal.directory,
            )
        if lost:
            raise CommandError(
                "stopped with samples not written to the database"
                + (f": {lost} samples lost" if lost > 0 else " (a write was still under way)")
            )
        logger.info("collector stopped cleanly")

    def mqtt_source(self, clock: Callable[[], float]) -> MqttSource | None:
        """The broker to subscribe to (COLLECTOR_MQTT_URL, checked by the system checks), or None."""
        if not settings.COLLECTOR_MQTT_URL:
            return None
        config = MqttConfig.from_url(
            settings.COLLECTOR_MQTT_URL,
            topics=tuple(settings.COLLECTOR_MQTT_TOPICS) or DEFAULT_TOPICS,
            client_id=settings.COLLECTOR_MQTT_CLIENT_ID,
            max_payload=settings.COLLECTOR_MQTT_MAX_PAYLOAD,
            ca_file=settings.COLLECTOR_MQTT_CA_FILE or None,
        )
        return MqttSource(config, clock=clock)

    def open_journal(self) -> Journal | None:
        """This process's journal, after replaying the journals of collectors that died; None if off or unusable."""
        if not settings.COLLECTOR_JOURNAL:
            logger.warning("COLLECTOR_JOURNAL is off: a crash loses what is not written to the database yet")
            return None
        options = {"max_bytes": settings.COLLECTOR_JOURNAL_MAX_BYTES}
        try:
            journal, others = Journal.open(settings.COLLECTOR_JOURNAL_DIR, **options)
        except JournalError as exc:
            logger.error("%s: running without a journal (what is not written yet is only in memory)", exc)
            return None
        for other in others:
            self.replay_other(other)
        try:  # belt and braces: record numbers must stay above every mark the database has
            journal.advance_past(storage.newest_journal_mark(journal.id))
        except DatabaseError as exc:
            logger.warning("cannot read the journal marks yet (%s)", exc)
        return journal

    def replay_other(self, other: Journal) -> None:
        """Write what a collector that died left in its journal, then delete it (kept if the database is away)."""
        try:
            marks = storage.journal_marks(other.id)
            count = 0
            bounds = replay.Bounds(through=other.last_seq)
            for batch in replay.batches(
                other.records(), other.id, marks, bounds, settings.COLLECTOR_JOURNAL_REPLAY_BUCKETS
            ):
                storage.write_batch(batch)
                count += 1
        except DatabaseError as exc:
            logger.warning("cannot replay the journal %s yet (%s); leaving it for the next start", other.directory, exc)
            other.stop()
            return
        directory = other.directory
        retire(other)
        try:  # its marks are no longer needed: nobody will write that journal again
            storage.forget_journal(other.id)
        except DatabaseError as exc:
            logger.warning("cannot delete the marks of the replayed journal %s (%s)", other.id, exc)
        logger.info("replayed %d batches from the journal %s left by an earlier collector", count, directory)

    def replay_earlier_run(self, writer: Writer, journal: Journal) -> None:
        """Before listening: write what this journal holds that the database does not (a crash, an outage)."""
        if not journal.has_records:
            return
        writer.replay_journal(journal.last_seq)
        logger.info("journal %s: replaying records up to %d before listening", journal.directory, journal.last_seq)
        deadline = time.monotonic() + REPLAY_BEFORE_LISTENING_SECONDS
        while writer.catching_up and not writer.last_failed and time.monotonic() < deadline:
            writer.write_pending()
        if writer.catching_up and writer.last_failed:
            logger.warning("journal %s: the database is not available; the replay goes on when it is back", journal.id)
        elif writer.catching_up:
            logger.warning(
                "journal %s: still replaying after %gs; listening now, the writer goes on with it",
                journal.id,
                REPLAY_BEFORE_LISTENING_SECONDS,
            )
