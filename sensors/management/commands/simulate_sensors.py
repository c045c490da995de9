"""python manage.py simulate_sensors: a fleet of fake boards for demos and benchmarks."""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from greenhouse_site.startup import raise_file_limit
from sensors.ingest.simulator import make_fleet, run_fleet


class Command(BaseCommand):
    help = "Simulate greenhouse sensor boards sending the firmware's lines to a collector."
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sensors", type=int, default=5, help="number of boards (default %(default)s)")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines (default %(default)s)")
        parser.add_argument("--host", default="127.0.0.1", help="collector address (default %(default)s)")
        parser.add_argument("--port", type=int, default=settings.COLLECTOR_PORT, help="collector port")
        parser.add_argument("--duration", type=float, help="stop after this many seconds (default: run until stopped)")
        parser.add_argument("--first-index", type=int, default=0, help="MAC numbering start, to run several fleets")
        parser.add_argument("--seed", type=int, default=1, help="random seed for the values")
        parser.add_argument("--report-every", type=float, default=30.0, help="seconds between progress log lines")

    def handle(self, *args, **options) -> None:
        if options["sensors"] < 1 or options["interval"] <= 0:
            raise CommandError("--sensors must be at least 1 and --interval positive")
        if options["first_index"] < 0 or options["first_index"] + options["sensors"] > 1 << 24:
            raise CommandError("MAC numbering must stay within 0..16777215")
        raise_file_limit(options["sensors"] + 64)
        boards = make_fleet(options["sensors"], options["first_index"], options["seed"])
        stats = asyncio.run(self.run(boards, options))
        self.stdout.write(
            f"sent {stats.lines_sent} lines from {len(boards)} boards "
            f"({stats.connections} connections, {stats.reconnects} reconnects, "
            f"{stats.connect_failures} failed connects)"
        )

    async def run(self, boards, options):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if options["duration"] is not None:
            loop.call_later(options["duration"], stop.set)
        return await run_fleet(
            boards, options["host"], options["port"], options["interval"], stop, options["report_every"]
        )
