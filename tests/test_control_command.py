"""End to end: firmware lines over a real socket -> the real collector -> `manage.py control` -> a plug."""

from __future__ import annotations

import socket

import pytest
from django.core.management import CommandError, call_command

from control.models import Event, Output, Rule
from sensors.models import Sensor
from tests.peers import RecordingServer, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MAC = "5c:cf:7f:0a:1b:2c"


@pytest.fixture
def plug():
    server = RecordingServer()
    yield server
    server.close()


def send(port: int, temperature: int, lines: int = 3) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as board:
        board.sendall(f"Soil: 612; temp: {temperature}; hum: 48; from {MAC}\n".encode() * lines)


def test_simulated_board_through_the_collector_switches_the_heater_on_and_off_again(
    start_collector, start_command, plug
):
    sensor = Sensor.objects.create(mac=MAC, name="North bench")
    heater = Output.objects.create(
        name="Heater",
        transport="http",
        http_on_url=plug.url("/cm?cmnd=Power%20On"),
        http_off_url=plug.url("/cm?cmnd=Power%20Off"),
    )
    Rule.objects.create(
        name="Heat the north bench",
        sensor=sensor,
        metric="air_temperature",
        threshold=5,
        release=7,
        min_samples=1,
        output=heater,
        on_trigger="on",
        on_release="off",
    )
    collector = start_collector("--flush-interval", "0.3", "--open-minute-interval", "0.3", "--stats-interval", "3600")
    control = start_command("control", "--interval", "0.3")
    try:
        paths = lambda: [request.path for request in plug.requests]  # noqa: E731
        # No data yet: the heater is put in its safe state (off) first.
        wait_until(lambda: paths() == ["/cm?cmnd=Power%20Off"], what="the safe-state command")
        send(collector.port, 3)
        wait_until(lambda: len(paths()) == 2, what="the heater switched on")
        send(collector.port, 40)  # the mean of the last two minutes is now far above 7 °C
        wait_until(lambda: len(paths()) == 3, what="the heater switched off")
        assert paths() == ["/cm?cmnd=Power%20Off", "/cm?cmnd=Power%20On", "/cm?cmnd=Power%20Off"]
        assert control.stop() == 0
    finally:
        control.kill()
    assert collector.stop() == 0
    control.assert_no_traceback()
    collector.assert_no_traceback()
    log = "".join(control.lines)
    assert "control running" in log and "received SIGTERM: control stopped" in log
    trigger = Event.objects.get(kind="trigger")
    assert trigger.value == 3.0 and trigger.samples >= 1  # the decision records what it saw
    assert Event.objects.filter(kind="command", ok=True).count() == 3


def test_control_refuses_a_non_positive_interval():
    with pytest.raises(CommandError, match="--interval must be a positive"):
        call_command("control", interval=0)


def test_a_second_control_process_refuses_to_start_and_a_killed_ones_lock_does_not_block_a_restart(start_command):
    first = start_command("control", "--interval", "0.5")
    wait_until(lambda: "control running" in first.output, what="the first control process")
    second = start_command("control", "--interval", "0.5")
    assert second.process.wait(30) == 1
    assert "only one may switch the outputs" in second.output
    assert "control running" not in second.output
    first.process.kill()  # SIGKILL: no clean release
    first.process.wait(10)
    third = start_command("control", "--interval", "0.5")
    wait_until(lambda: "control running" in third.output, what="a restart after the kill")
    assert third.stop() == 0
