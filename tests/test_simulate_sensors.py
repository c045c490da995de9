"""simulate_sensors against the real collector: firmware lines, distinct boards, reconnects."""

from __future__ import annotations

import csv
import io
import random
import re
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from harness.processes import ROOT, free_port
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
    port = free_port()  # a free port both collector runs will use
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


@pytest.mark.parametrize(
    ("kind", "metrics"),
    [
        ("tasmota", {"air_temperature", "humidity", "soil_moisture"}),
        ("esphome", {"air_temperature", "humidity", "soil_moisture"}),
        ("shelly", {"air_temperature", "humidity"}),
    ],
)
def test_simulated_mqtt_devices_report_through_the_collector(start_collector, kind, metrics):
    """`simulate_sensors --mqtt`: the demo's Tasmota, ESPHome and Shelly devices, through the real broker."""
    from sensors.models import CurrentReading
    from tests.peers import broker_or_skip, forget_session

    broker_or_skip()
    first = random.Random().randrange(1 << 20, 1 << 24)  # names of our own on the shared broker
    client_id = f"gh-sim-{first:x}"
    env = manage_env(COLLECTOR_MQTT_URL="mqtt://127.0.0.1:1883", COLLECTOR_MQTT_CLIENT_ID=client_id)
    try:
        collector = start_collector("--flush-interval", "0.3", "--open-minute-interval", "0.3", env=env)
        wait_until(lambda: "subscribed to" in collector.output, 15, "the collector to subscribe")
        devices = {f"{kind}:sim-{kind}-{first + index}" for index in range(3)}
        simulator = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "simulate_sensors",
                "--mqtt",
                "mqtt://127.0.0.1:1883",
                "--kind",
                kind,
                "--sensors",
                "3",
                "--first-index",
                str(first),
                "--interval",
                "0.3",
            ],
            cwd=ROOT,
            env=manage_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(
                lambda: (
                    {
                        (device, metric)
                        for device, metric in CurrentReading.objects.filter(sensor__device_id__in=devices).values_list(
                            "sensor__device_id", "metric"
                        )
                    }
                    == {(device, metric) for device in devices for metric in metrics}
                ),
                20,
                "every simulated device's metrics",
            )
        finally:
            simulator.send_signal(signal.SIGINT)
            output, _ = simulator.communicate(timeout=15)
        assert simulator.returncode == 0, output
        assert re.search(rf"published \d+ messages from 3 {kind} devices", output)
        # Their wills on stop: offline at once.
        wait_until(
            lambda: Sensor.objects.filter(device_id__in=devices, offline_since__isnull=False).count() == 3,
            10,
            "offline",
        )
        assert collector.stop() == 0
        collector.assert_no_traceback()
    finally:
        forget_session(client_id)
        clear_retained(kind, [f"sim-{kind}-{first + index}" for index in range(3)])


def clear_retained(kind: str, names: list[str]) -> None:
    """The simulated devices' retained wills and states, removed: the shared broker keeps nothing of a test."""
    from sensors.ingest.simulator import availability_message
    from tests.peers import Publisher

    publisher = Publisher()
    for name in names:
        topics = [availability_message(kind, name, False)[0]]
        if kind == "esphome":
            topics += [f"{name}/sensor/{object_id}/state" for object_id in ("temperature", "humidity", "soil_moisture")]
        for topic in topics:
            publisher.publish(topic, b"", retain=True)
    publisher.close()
