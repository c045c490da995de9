"""Commanded vs confirmed: a command counts once the device confirms it; until then it is retried,
the grower is told once, and confirmed outputs are kept alive. Against a real HTTP plug."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from control.engine import Engine
from control.models import Event, Output, Rule
from control.transports import Dispatcher, reported_state
from tests.peers import RecordingServer, wait_until
from tests.test_control_engine import heater_rule, http_output, report

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """The engine's clock, moved on by the test (retry back-off and keep-alive are minutes long)."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def plug():
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(settings, clock):
    settings.CONTROL_COMMAND_TIMEOUT = 2.0
    settings.CONTROL_COMMAND_ATTEMPTS = 1
    settings.CONTROL_NOTIFY_WEBHOOK = ""
    settings.CONTROL_NOTIFY_EMAILS = []
    dispatcher = Dispatcher(backoff=0.01)
    yield Engine(dispatcher, clock=clock)
    dispatcher.shutdown(5)


def settled(engine: Engine) -> None:
    """Wait until no command is on the dispatcher and record what came back."""

    def idle() -> bool:
        engine.record_results()
        return not any(engine._in_flight.values())

    wait_until(idle, what="the commands in flight")


def test_a_command_the_plug_refuses_is_retried_with_back_off_until_it_is_confirmed(engine, plug, clock, caplog):
    heater = http_output(plug)
    plug.refuse_until = time.monotonic() + 3600  # off the Wi-Fi
    engine.command(heater, True, "frost")
    settled(engine)
    heater.refresh_from_db()
    assert heater.is_on is True and not heater.confirmed and heater.unconfirmed_since == clock.now
    assert "HTTP 503" in heater.last_error
    sends = [plug.refused]
    for _ in range(6):  # retries at 5, 10, 20, 30, 30, 30 s: never believed delivered, never given up
        clock.advance(4.9)
        engine.follow_up_outputs()
        settled(engine)
        clock.advance(30)
        engine.follow_up_outputs()
        settled(engine)
        sends.append(plug.refused)
    assert sends == [1, 2, 3, 4, 5, 6, 7]
    plug.refuse_until = 0.0  # back on the network
    clock.advance(30)
    engine.follow_up_outputs()
    settled(engine)
    heater.refresh_from_db()
    assert plug.state is True and heater.confirmed and heater.confirmed_at == clock.now
    assert heater.unconfirmed_since is None and heater.last_error == ""


def test_the_grower_is_told_once_when_a_command_stays_unconfirmed_and_again_when_it_is_confirmed(
    engine, plug, clock, settings
):
    webhook = RecordingServer()
    try:
        settings.CONTROL_NOTIFY_WEBHOOK = webhook.url("/hook")
        heater = http_output(plug)
        plug.refuse_until = time.monotonic() + 3600
        engine.command(heater, True, "frost")
        settled(engine)
        for _ in range(5):  # 3 minutes unconfirmed
            clock.advance(40)
            engine.follow_up_outputs()
            settled(engine)
        wait_until(lambda: len(webhook.requests) >= 1, what="the alert")
        alerts = Event.objects.filter(kind="notification", message__contains="has not confirmed it")
        assert alerts.count() == 1  # once, not at every retry
        assert (
            "Heater is commanded ON but the device has not confirmed it since" in webhook.requests[0].json()["message"]
        )
        plug.refuse_until = 0.0
        clock.advance(40)
        engine.follow_up_outputs()
        settled(engine)
        wait_until(lambda: len(webhook.requests) == 2, what="the all-clear")
        assert webhook.requests[1].json()["message"].startswith("Heater confirmed ON (not confirmed since")
        heater.refresh_from_db()
        assert heater.confirmed and not heater.unconfirmed_alerted
    finally:
        webhook.close()


def test_keep_alive_puts_right_a_plug_that_rebooted_into_off(engine, plug, clock):
    heater = http_output(plug, keep_alive=timedelta(minutes=5))
    engine.command(heater, True, "frost")
    settled(engine)
    assert plug.state is True
    plug.state = False  # a power cut: the plug comes back in its power-on default
    clock.advance(299)
    engine.follow_up_outputs()
    assert len(plug.requests) == 1  # not due yet
    clock.advance(2)
    engine.follow_up_outputs()
    settled(engine)
    assert plug.state is True and len(plug.requests) == 2


def test_no_keep_alive_when_it_is_off(engine, plug, clock):
    heater = http_output(plug, keep_alive=timedelta(0))
    engine.command(heater, True, "frost")
    settled(engine)
    clock.advance(3600)
    engine.follow_up_outputs()
    assert len(plug.requests) == 1


def test_a_device_that_answers_with_the_other_state_has_not_confirmed(engine, plug):
    plug.stuck = True  # a relay that does not switch: {"ison": false}
    heater = http_output(plug)
    engine.command(heater, True, "frost")
    settled(engine)
    heater.refresh_from_db()
    assert not heater.confirmed and "the device reports OFF" in heater.last_error


@pytest.mark.parametrize("stuck", [False, True], ids=["switches", "relay-stuck"])
def test_a_status_url_is_read_to_confirm_when_the_command_answer_says_nothing(engine, plug, stuck):
    """Shelly Gen2: Switch.Set answers only was_on (the state before); Switch.GetStatus says the output."""
    plug.stuck = stuck
    heater = http_output(
        plug,
        http_on_url=plug.url("/rpc/Switch.Set?id=0&on=true"),
        http_off_url=plug.url("/rpc/Switch.Set?id=0&on=false"),
        http_status_url=plug.url("/rpc/Switch.GetStatus?id=0"),
    )
    engine.command(heater, True, "frost")
    settled(engine)
    assert [r.path for r in plug.requests] == ["/rpc/Switch.Set?id=0&on=true", "/rpc/Switch.GetStatus?id=0"]
    heater.refresh_from_db()
    assert heater.confirmed is not stuck
    if stuck:
        assert "the device reports OFF" in heater.last_error


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ('HTTP 200 {"POWER":"ON"}', True),  # Tasmota cm?cmnd=Power%20On
        ('HTTP 200 {"POWER1":"OFF"}', False),
        ('HTTP 200 {"ison":true,"has_timer":false}', True),  # Shelly Gen1 /relay/0?turn=on
        ('{"id":0,"source":"HTTP","output":false,"apower":0.0}', False),  # Shelly Gen2 Switch.GetStatus
        ('HTTP 200 {"was_on":true}', None),  # Shelly Gen2 Switch.Set: the state before
        ("HTTP 200 OK", None),
        ("HTTP 200 [1, 2]", None),
    ],
)
def test_the_state_a_device_reports(answer, state):
    assert reported_state(answer) is state


def test_a_database_error_in_the_middle_of_a_decision_leaves_nothing_half_made(engine, plug, clock):
    """The rule's new state, its event and its output's wish are one transaction: a database that
    fails the output's update (here a trigger raising, as a locked database would) rolls back the
    rule's TRIGGERED too, so the next pass decides again instead of believing the heater asked for."""
    from sensors.models import Sensor

    bench = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")
    heater = http_output(plug)
    rule = heater_rule(bench, heater)
    clock.now = timezone.now()
    report(bench, "air_temperature", 3.0)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_output BEFORE UPDATE ON control_output "
                "BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_output() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'database is locked'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_output BEFORE UPDATE ON control_output "
                "FOR EACH ROW EXECUTE FUNCTION refuse_output()"
            )
    with pytest.raises(DatabaseError):
        engine.evaluate(Rule.objects.select_related("sensor", "output").get(pk=rule.pk))
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_output" + ("" if connection.vendor == "sqlite" else " ON control_output"))
    rule.refresh_from_db()
    assert rule.phase == "idle" and not Event.objects.filter(kind="trigger").exists()
    assert Output.objects.get(pk=heater.pk).wanted_on is None
    engine.step()  # the database is back: the same decision, whole
    settled(engine)
    rule.refresh_from_db()
    assert rule.phase == "triggered" and Output.objects.get(pk=heater.pk).is_on is True and plug.state is True


class FakeTasmota:
    """A Tasmota plug on the real broker: takes cmnd/<topic>/POWER, reports stat/<topic>/POWER
    (unless `silent`: a plug that is off the Wi-Fi while the broker still takes the command)."""

    def __init__(self, topic: str, silent: bool = False) -> None:
        import paho.mqtt.client as mqtt

        from tests.peers import BROKER

        self.topic, self.silent, self.state = topic, silent, False
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"cmnd/{topic}/POWER", qos=1)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._command
        self.client.connect(*BROKER)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe on the broker"
        # An old retained state: "ON" for the silent plug, which must not pass for its answer.
        self.client.publish(f"stat/{topic}/POWER", "ON" if silent else "OFF", qos=1, retain=True).wait_for_publish(5)

    def _command(self, client, userdata, message) -> None:
        self.state = message.payload.decode().upper() == "ON"
        if not self.silent:
            client.publish(f"stat/{self.topic}/POWER", "ON" if self.state else "OFF", qos=1)

    def close(self) -> None:
        self.client.publish(f"stat/{self.topic}/POWER", b"", qos=1, retain=True)  # clear the retained state
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("silent", [False, True], ids=["reports", "silent"])
def test_an_mqtt_output_with_a_state_topic_is_confirmed_by_the_state_the_device_publishes(engine, silent):
    from tests.peers import broker_or_skip

    host, port = broker_or_skip()
    topic = f"greenhouse-test-{uuid.uuid4().hex[:8]}"
    device = FakeTasmota(topic, silent=silent)
    try:
        relay = Output(
            name="Relay",
            transport="mqtt",
            mqtt_broker=f"mqtt://{host}:{port}",
            mqtt_topic=f"cmnd/{topic}/POWER",
            mqtt_state_topic=f"stat/{topic}/POWER",
        )
        relay.full_clean()
        relay.save()
        engine.command(relay, True, "frost")
        settled(engine)
        relay.refresh_from_db()
        wait_until(lambda: device.state is True, what="the command on the broker")
        assert relay.confirmed is not silent  # a retained state from before never counts
        if silent:
            assert "the device did not report ON on stat/" in relay.last_error
        else:
            assert relay.last_error == ""
    finally:
        device.close()
