"""python manage.py simulate_sensors: a fleet of fake boards for demos and benchmarks."""

from __future__ import annotations

import asyncio
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from greenhouse_site.startup import raise_file_limit
from sensors.ingest.mqtt import MqttConfig, MqttUrlError
from sensors.ingest.simulator import MQTT_KINDS, make_fleet, run_fleet, run_mqtt_fleet


class Command(BaseCommand):
    help = (
        "Simulate greenhouse sensor boards sending the firmware's lines to a collector, "
        "or (--mqtt) Tasmota, ESPHome or Shelly devices publishing to a broker."
    )
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
        parser.add_argument(
            "--mqtt",
            metavar="URL",
            help="publish to this broker instead (mqtt://[user:password@]host[:port]) as --kind devices",
        )
        parser.add_argument(
            "--kind", choices=MQTT_KINDS, default="tasmota", help="with --mqtt: which firmware (default %(default)s)"
        )

    def handle(self, *args, **options) -> None:
        if options["sensors"] < 1 or options["interval"] <= 0:
            raise CommandError("--sensors must be at least 1 and --interval positive")
        if options["first_index"] < 0 or options["first_index"] + options["sensors"] > 1 << 24:
            raise CommandError("MAC numbering must stay within 0..16777215")
        boards = make_fleet(options["sensors"], options["first_index"], options["seed"])
        if options["mqtt"]:
            self.run_mqtt(boards, options)
            return
        raise_file_limit(options["sensors"] + 64)
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

    def run_mqtt(self, boards, options) -> None:
        try:
            config = MqttConfig.from_url(options["mqtt"])
        except MqttUrlError as exc:
            raise CommandError(str(exc).replace("COLLECTOR_MQTT_URL", "--mqtt")) from None
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if options["duration"] is not None:
            threading.Timer(options["duration"], stop.set).start()
        stats = run_mqtt_fleet(config, options["kind"], boards, options["interval"], stop, options["report_every"])
        self.stdout.write(
            f"published {stats.messages_sent} messages from {len(boards)} {options['kind']} devices "
            f"to {config.where} ({stats.failures} not queued)"
        )
