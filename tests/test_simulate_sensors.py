"""simulate_sensors against the real collector: firmware lines, distinct boards, reconnects."""

from __future__ import annotations

import csv
import io
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from harness.processes import ROOT
from sensors.ingest.protocol import Accepted, parse_line
from sensors.ingest.simulator import make_fleet
from sensors.models import Sensor
from tests.conftest import manage_env
from tests.peers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def simulate(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "simulate_sensors", "--port", str(port), *args],
        cwd=ROOT,
        env=manage_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sent_lines(output: str) -> int:
    return int(re.search(r"sent (\d+) lines from", output).group(1))


def test_boards_speak_the_exact_firmware_format():
    for board in make_fleet(4):
        line = board.line()
        assert re.fullmatch(rb"Soil: \d+; temp: [\d.]+; hum: [\d.]+; from ([0-9a-f]{2}:){5}[0-9a-f]{2}\n", line)
        assert isinstance(parse_line(line.rstrip(b"\n")), Accepted)
    assert len({board.mac for board in make_fleet(300)}) == 300


def test_every_line_the_fleet_sends_is_stored(start_collector):
    collector = start_collector("--flush-interval", "0.3", "--open-minute-interval", "0.3")
    fleet = simulate(collector.port, "--sensors", "6", "--interval", "0.1", "--duration", "2")
    output, _ = fleet.communicate(timeout=30)
    assert fleet.returncode == 0, output
    time.sleep(0.3)
    assert collector.stop() == 0, collector.output
    sent = sent_lines(output)
    assert sent >= 6 * 10

    out = io.StringIO()
    call_command("export_readings", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len({row["sensor"] for row in rows}) == 6
    for metric in ("soil_moisture", "air_temperature", "humidity"):
        assert sum(int(row["samples"]) for row in rows if row["metric"] == metric) == sent


def test_boards_reconnect_when_the_collector_restarts(start_collector):
    with socket.socket() as probe:  # a free port both collector runs will use
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fast = ("--flush-interval", "0.3", "--open-minute-interval", "0.3")  # sensors registered within 0.3 s
    first = start_collector("--port", str(port), *fast)
    fleet = simulate(port, "--sensors", "3", "--interval", "0.1", "--duration", "60")
    wait_until(lambda: Sensor.objects.count() == 3, timeout=30, what="the three boards reporting")
    assert first.stop() == 0
    restarted = timezone.now()
    second = start_collector("--port", str(port), *fast)
    # The boards retry (0.5 s, 1 s, 2 s ... backoff): wait until all three reported to the new one.
    back = lambda: Sensor.objects.filter(last_seen__gt=restarted).count() == 3  # noqa: E731
    wait_until(back, timeout=30, what="the three boards back")
    fleet.send_signal(signal.SIGTERM)
    output, _ = fleet.communicate(timeout=30)
    assert second.stop() == 0
    connections, reconnects = map(int, re.search(r"\((\d+) connections, (\d+) reconnects", output).groups())
    assert connections >= 6 and reconnects >= 3, output
    assert "connections opened 3" in second.output  # all three boards came back (stats lines add up to 3)
