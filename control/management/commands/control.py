"""python manage.py control: evaluate the rules every few seconds and switch outputs.

Only wiring: the decisions are in control.rules, the database work in control.engine.
A process of its own, so it can never slow the collector's ingest.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from control.engine import Engine
from control.singleton import ControllerLock
from control.transports import Dispatcher
from greenhouse_site.startup import require_migrated

logger = logging.getLogger("control.command")

SLEEP_SLICE = 0.1  # a stop request is noticed within this


class Command(BaseCommand):
    help = "Evaluate the control rules and switch outputs / notify (docs/control.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.CONTROL_INTERVAL,
            help="seconds between evaluations (default %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        self.interval = options["interval"]
        self.stop_reason = ""
        require_migrated(logger, "retrying every pass")
        self.dispatcher = Dispatcher()
        self.engine = Engine(self.dispatcher)

        def stop(signum: int, frame: object) -> None:
            self.stop_reason = f"received {signal.Signals(signum).name}"  # no I/O in a signal handler

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.lock = ControllerLock()
        if not self.take_lock():
            return
        logger.info(
            "control running (every %gs; rules see a board's newest reading within about %gs: live values "
            "every COLLECTOR_LIVE_INTERVAL=%gs plus one pass; rules reading the mean see the minutes the "
            "collector writes every COLLECTOR_OPEN_MINUTE_INTERVAL=%gs; database %s)",
            self.interval,
            settings.COLLECTOR_LIVE_INTERVAL + self.interval,
            settings.COLLECTOR_LIVE_INTERVAL,
            settings.COLLECTOR_OPEN_MINUTE_INTERVAL,
            connection.vendor,
        )
        started = False
        try:
            while not self.stop_reason:
                started = self.run_once(started)
                self.sleep(self.interval)
        finally:
            self.dispatcher.shutdown(wait=settings.CONTROL_COMMAND_TIMEOUT + 1)
            try:
                self.engine.record_results()
            except DatabaseError as exc:
                logger.warning("cannot record the last results (%s)", exc)
            connection.close()
            self.lock.release()
        logger.info("%s: control stopped", self.stop_reason)

    def take_lock(self) -> bool:
        """One controller per database: refuse when another holds the lock; wait while the database is away."""
        while not self.stop_reason:
            try:
                taken = self.lock.acquire()
            except DatabaseError as exc:
                logger.warning("cannot check for another control process (%s); trying again in %gs", exc, self.interval)
                self.lock.release()
                self.sleep(self.interval)
                continue
            if not taken:
                raise CommandError(
                    f"{self.lock.holder()}: only one may switch the outputs. Stop it first "
                    "(supervisorctl stop control), or this one."
                )
            return True
        return False

    def run_once(self, started: bool) -> bool:
        """One pass; a database problem is logged and retried on the next pass. Returns `started`."""
        close_old_connections()
        try:
            if not started:
                self.engine.start()
                started = True
            self.engine.step()
        except DatabaseError as exc:
            logger.warning("database error (%s); trying again in %gs", exc, self.interval)
            connection.close()
        return started

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_reason and time.monotonic() < deadline:
            time.sleep(min(SLEEP_SLICE, max(0.0, deadline - time.monotonic())))
