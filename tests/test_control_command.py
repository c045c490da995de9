"""End to end: firmware lines over a real socket -> the real collector -> `manage.py control` -> a plug."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

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


def frost_heater(plug: RecordingServer, *, min_samples: int = 1, **output_fields) -> Output:
    """The north bench's sensor, a heater on `plug` (Tasmota URLs) and a rule: on below 5 °C, off above 7."""
    sensor = Sensor.objects.create(device_id=MAC, name="North bench")
    heater = Output.objects.create(
        name="Heater",
        transport="http",
        http_on_url=plug.url("/cm?cmnd=Power%20On"),
        http_off_url=plug.url("/cm?cmnd=Power%20Off"),
        **output_fields,
    )
    Rule.objects.create(
        name="Heat the north bench",
        sensor=sensor,
        metric="air_temperature",
        threshold=5,
        release=7,
        min_samples=min_samples,
        output=heater,
        on_trigger="on",
        on_release="off",
    )
    return heater


def test_simulated_board_through_the_collector_switches_the_heater_on_and_off_again(
    start_collector, start_command, plug
):
    frost_heater(plug)
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


# --- commanded vs confirmed, with the real collector and control ---------------------------------
class Board(threading.Thread):
    """A board reporting `temperature` every second until stopped (the rule's data stays fresh)."""

    def __init__(self, port: int, temperature: int) -> None:
        super().__init__(daemon=True)
        self.port, self.temperature = port, temperature
        self.interval = 1.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                send(self.port, self.temperature, lines=1)
            except OSError:
                pass
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def confirmed_on() -> bool:
    heater = Output.objects.get(name="Heater")
    return heater.is_on is True and heater.confirmed


FAST_COLLECTOR = ("--flush-interval", "0.3", "--open-minute-interval", "0.3", "--stats-interval", "3600")


@pytest.mark.timeout(300)
def test_a_plug_off_the_network_for_90_s_is_on_and_confirmed_soon_after_it_comes_back(
    start_collector, start_command, plug, admin_client
):
    frost_heater(plug)
    plug.refuse_until = time.monotonic() + 90  # every request answered 503 for 90 s
    collector = start_collector(*FAST_COLLECTOR)
    control = start_command("control", "--interval", "1")
    board = Board(collector.port, 3)
    board.start()
    try:
        wait_until(lambda: Output.objects.get(name="Heater").is_on is True, timeout=30, what="the decision")
        assert not confirmed_on()
        page = admin_client.get("/control/").content.decode()
        assert 'class="device unconfirmed"' in page and "not confirmed since" in page
        wait_until(lambda: time.monotonic() >= plug.refuse_until, timeout=100, what="the plug's return")
        back = time.monotonic()
        wait_until(confirmed_on, timeout=60, what="the confirmation")
        after = time.monotonic() - back
        assert plug.state is True
        assert after <= 30 + 1 + 5  # CONTROL_RETRY_MAX, one pass, and a request's time
        print(f"refused {plug.refused} requests over 90 s; on and confirmed {after:.1f} s after the plug came back")
        page = admin_client.get("/control/").content.decode()
        assert 'class="device unconfirmed"' not in page and "confirmed on at" in page
        assert control.stop() == 0
    finally:
        board.stop()
        control.kill()
    assert collector.stop() == 0
    assert 5 <= plug.refused <= 20  # retried with back-off: not hammered, not given up


def test_a_plug_that_reboots_into_off_is_corrected_within_its_keep_alive(start_collector, start_command, plug):
    frost_heater(plug, keep_alive=timedelta(seconds=5))
    collector = start_collector(*FAST_COLLECTOR)
    control = start_command("control", "--interval", "1")
    board = Board(collector.port, 3)
    board.start()
    try:
        wait_until(confirmed_on, timeout=30, what="the heater on and confirmed")
        plug.state = False  # a power cut: the plug boots into its power-on default
        rebooted = time.monotonic()
        wait_until(lambda: plug.state is True, timeout=15, what="the keep-alive")
        assert time.monotonic() - rebooted <= 5 + 1 + 2
        assert control.stop() == 0
    finally:
        board.stop()
        control.kill()
    assert collector.stop() == 0


def test_control_killed_between_its_decision_and_the_command_ends_up_right_after_a_restart(
    start_collector, start_command
):
    plug = RecordingServer(hold=True)  # the command does not get through before the kill
    try:
        frost_heater(plug)
        collector = start_collector(*FAST_COLLECTOR)
        control = start_command("control", "--interval", "1")
        board = Board(collector.port, 3)
        board.start()
        wait_until(lambda: Output.objects.get(name="Heater").is_on is True, timeout=30, what="the decision")
        control.process.kill()
        control.process.wait(10)
        control.assert_no_traceback()
        plug.refuse_until = time.monotonic() + 3600  # a request still held (if any) switches nothing ...
        plug.release()
        time.sleep(0.5)
        assert plug.state is False and not confirmed_on()
        plug.refuse_until = 0.0
        again = start_command("control", "--interval", "1")
        wait_until(confirmed_on, timeout=30, what="the restart to send the decided state")
        assert plug.state is True
        assert again.stop() == 0
        board.stop()
        assert collector.stop() == 0
    finally:
        plug.close()


def test_with_default_intervals_a_frost_reaches_the_rule_within_seconds(start_collector, start_command, plug):
    """Collector and control with their default intervals (open minute written every 30 s, live values
    every 2 s, rules every 5 s): a board's sudden 20 -> 3 °C reaches the rule, and the heater, in seconds."""
    from sensors.models import LiveReading

    frost_heater(plug, min_samples=Rule._meta.get_field("min_samples").default)  # every other rule field at its default
    sensor = Sensor.objects.get(device_id=MAC)
    collector = start_collector("--stats-interval", "3600")
    control = start_command("control")
    board = Board(collector.port, 20)
    board.interval = 2.0  # the firmware's pace
    board.start()
    try:
        wait_until(lambda: LiveReading.objects.filter(sensor=sensor).exists(), timeout=40, what="live values")
        wait_until(lambda: plug.state is False and len(plug.requests) >= 1, timeout=20, what="the heater off")
        board.temperature = 3
        cold = time.monotonic()
        wait_until(lambda: plug.state is True, timeout=30, what="the heater on")
        reaction = time.monotonic() - cold
        trigger = Event.objects.get(kind="trigger")
        print(f"first cold line -> heater ON request: {reaction:.1f} s (rule saw {trigger.value} °C)")
        assert reaction <= 10.0  # live values every 2 s + a rule pass every 5 s + the request
        assert control.stop() == 0
    finally:
        board.stop()
        control.kill()
    assert collector.stop() == 0
    log = "".join(control.lines)
    assert "rules see a board's newest reading within" in log
