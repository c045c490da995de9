"""python manage.py collect: receive sensor lines over TCP and store per-minute readings."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from sensors import storage
from sensors.collector import Collector, CollectorConfig, KnownSensors
from sensors.listener import BindError
from sensors.retention import RetentionThread
from sensors.system import raise_file_limit, require_migrated
from sensors.writer import Writer

logger = logging.getLogger("sensors.collect")


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
            max_metrics_per_sensor=settings.COLLECTOR_MAX_METRICS_PER_SENSOR,
            allowed_networks=[ipaddress.ip_network(cidr, strict=False) for cidr in settings.COLLECTOR_ALLOWED_NETWORKS],
            reuse_port=options["reuse_port"],
        )
        writer = Writer(
            storage.write_batch,
            on_exit=storage.close_connection,
            max_pending_buckets=settings.COLLECTOR_MAX_PENDING_BUCKETS,
        )
        known = None
        if settings.COLLECTOR_UNKNOWN_SENSORS == "reject":
            known = KnownSensors(storage.registered_macs, on_exit=storage.close_connection)
            known.refresh()  # before the first line arrives
        collector = Collector(config, writer, known_sensors=known)
        retention = RetentionThread(settings.MINUTE_RETENTION_DAYS)
        try:
            host, port = collector.start()
        except BindError as exc:
            raise CommandError(str(exc)) from exc
        retention.start()
        # The main thread only reads sockets from here on; the writer has its own connection.
        connection.close()

        def stop(signum: int, frame: object) -> None:
            collector.request_stop(f"received {signal.Signals(signum).name}")  # no I/O in a signal handler

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info(
            "collector listening on %s:%d (ended minutes written within %gs, the open minute every %gs, "
            "database %s, unknown sensors: %s, networks: %s%s)",
            host,
            port,
            config.flush_interval,
            config.open_minute_interval,
            connection.vendor,
            settings.COLLECTOR_UNKNOWN_SENSORS,
            ", ".join(settings.COLLECTOR_ALLOWED_NETWORKS) or "any",
            ", port shared with other collectors (--reuse-port)" if config.reuse_port else "",
        )
        try:
            collector.run()
        finally:  # even after an unexpected error, write what is held before exiting
            retention.stop()
            lost = collector.shutdown()
        if lost:
            raise CommandError(
                "stopped with samples not written to the database"
                + (f": {lost} samples lost" if lost > 0 else " (a write was still under way)")
            )
        logger.info("collector stopped cleanly")
