"""The control engine against real peers: an HTTP server, the Mosquitto broker, an SMTP server.

Readings are written straight into the database (the collector's part is proven elsewhere);
the engine is driven one `step()` at a time, as the `control` command does.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from control.engine import Engine
from control.models import Event, Output, Rule
from control.transports import Dispatcher
from harness.processes import free_port
from sensors.models import Location, Reading, Sensor
from tests.peers import RecordingServer, SMTPServer, Subscriber, broker_or_skip, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def http_peer():
    servers: list[RecordingServer] = []

    def start(**kwargs) -> RecordingServer:
        server = RecordingServer(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def engine(settings):
    settings.CONTROL_COMMAND_TIMEOUT = 2.0
    dispatcher = Dispatcher(backoff=0.05)
    yield Engine(dispatcher)
    dispatcher.shutdown(5)


@pytest.fixture
def bench() -> Sensor:
    return Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c", name="North bench", temperature_offset=-1.0)


def report(sensor: Sensor, metric: str, value: float, samples: int = 30, age: float = 0.0) -> None:
    """What the collector would have flushed: this minute's row, and the board seen `age` s ago."""
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    Reading.objects.filter(sensor=sensor, metric=metric).delete()
    Reading.objects.create(
        sensor=sensor,
        metric=metric,
        start=minute,
        samples=samples,
        value_sum=value * samples,
        value_min=value,
        value_max=value,
    )
    Sensor.objects.filter(pk=sensor.pk).update(last_seen=now - timedelta(seconds=age))
    sensor.refresh_from_db()


def heater_rule(sensor: Sensor, output: Output, **extra) -> Rule:
    fields = dict(
        name="Heat the north bench",
        sensor=sensor,
        metric="air_temperature",
        direction="below",
        threshold=5.0,
        release=7.0,
        output=output,
        on_trigger="on",
        on_release="off",
    )
    fields.update(extra)
    rule = Rule(**fields)
    rule.full_clean()
    rule.save()
    return rule


def http_output(server: RecordingServer, **extra) -> Output:
    fields = dict(
        name="Heater",
        transport="http",
        http_method="POST",
        http_on_url=server.url("/relay/0?turn=on"),
        http_off_url=server.url("/relay/0?turn=off"),
        http_on_body='{"on": true}',
        http_off_body='{"on": false}',
    )
    output = Output(**{**fields, **extra})
    output.full_clean()
    output.save()
    return output


def settle(engine: Engine, event: Event | None = None) -> Event:
    """Collect results until the newest command or notification event is complete."""
    target = event or Event.objects.filter(kind__in=["command", "start", "notification"]).first()

    def done():
        engine.record_results()
        target.refresh_from_db()
        return target.ok is not None

    wait_until(done, what=f"the result of {target}")
    return target


def test_heater_is_switched_on_over_http_below_the_threshold_and_off_above_the_release(engine, http_peer, bench):
    plug = http_peer()
    heater = http_output(plug)
    heater_rule(bench, heater)
    report(bench, "air_temperature", 5.5)  # 4.5 °C after the -1 °C calibration offset
    engine.step()
    command = settle(engine)
    assert [(r.method, r.path, r.body) for r in plug.requests] == [("POST", "/relay/0?turn=on", '{"on": true}')]
    assert command.ok and command.detail.startswith("HTTP 200")
    heater.refresh_from_db()
    assert heater.is_on is True and heater.delivered is True

    report(bench, "air_temperature", 7.5)  # 6.5 °C: inside the hysteresis band, stays on
    engine.step()
    assert len(plug.requests) == 1
    report(bench, "air_temperature", 8.5)
    engine.step()
    settle(engine)
    assert [r.path for r in plug.requests] == ["/relay/0?turn=on", "/relay/0?turn=off"]
    trigger = Event.objects.get(kind="trigger")
    assert trigger.value == pytest.approx(4.5) and trigger.samples == 30 and trigger.age is not None


def test_location_rule_uses_the_mean_of_the_sensors_placed_there(engine, http_peer, bench):
    plug = http_peer()
    tray = Location.objects.create(name="Tray A")
    other = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2d")
    bench.move_to(tray)
    other.move_to(tray)
    Rule.objects.create(
        name="Tray A cold",
        location=tray,
        metric="air_temperature",
        threshold=5,
        release=7,
        output=http_output(plug),
        on_trigger="on",
        on_release="off",
    )
    report(bench, "air_temperature", 3.0)  # 2 °C calibrated
    report(other, "air_temperature", 9.0)  # mean 5.5: not below 5
    engine.step()
    settle(engine)
    assert Rule.objects.get().last_value == pytest.approx(5.5)
    report(other, "air_temperature", 7.0)  # mean 4.5
    engine.step()
    settle(engine)
    assert [r.path for r in plug.requests] == ["/relay/0?turn=off", "/relay/0?turn=on"]


def test_a_silent_sensor_in_a_location_is_left_out_of_its_mean(engine, http_peer, bench):
    tray = Location.objects.create(name="Tray A")
    silent = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2d")
    bench.move_to(tray)
    silent.move_to(tray)
    Rule.objects.create(name="Tray A cold", location=tray, metric="air_temperature", threshold=5, release=7)
    report(bench, "air_temperature", 3.0)  # 2 °C calibrated, fresh
    report(silent, "air_temperature", 30.0, age=600)  # a board gone quiet ten minutes ago
    engine.step()
    rule = Rule.objects.get()
    assert rule.phase == "triggered" and rule.last_value == pytest.approx(2.0)


def test_a_failing_plug_is_retried_and_the_error_recorded(engine, http_peer, bench, settings):
    settings.CONTROL_COMMAND_ATTEMPTS = 2
    broken = http_peer(status=500, answer="relay fault")
    heater = http_output(broken)
    heater_rule(bench, heater)
    report(bench, "air_temperature", 0)
    engine.step()
    command = settle(engine)
    assert len(broken.requests) == 2
    assert command.ok is False and "attempt 2: HTTP 500 relay fault" in command.detail
    heater.refresh_from_db()
    assert heater.is_on is True and heater.delivered is False  # commanded, but not confirmed


def test_a_plug_that_never_answers_does_not_hold_up_other_outputs(engine, http_peer, bench):
    hanging = http_peer(hold=True)
    working = http_peer()
    heater_rule(bench, http_output(hanging, name="Dead heater"))
    heater_rule(bench, http_output(working, name="Good heater"), name="Second heater")
    report(bench, "air_temperature", 0)
    engine.step()  # returns while the dead plug's request is still hanging
    wait_until(lambda: working.requests, what="the working plug's request")
    assert not hanging.requests
    hanging.release()


def test_data_older_than_the_max_age_drives_the_vent_to_its_safe_state_open(engine, http_peer, bench):
    plug = http_peer()
    vent = http_output(plug, name="Roof vent", safe_on=True)
    Rule.objects.create(
        name="Vent when hot",
        sensor=bench,
        metric="air_temperature",
        direction="above",
        threshold=30,
        release=27,
        max_age=timedelta(minutes=2),
        output=vent,
        on_trigger="on",
        on_release="off",
    )
    report(bench, "air_temperature", 21)
    engine.step()
    settle(engine)  # cool: the vent is closed
    report(bench, "air_temperature", 21, age=300)  # the board went silent five minutes ago
    engine.step()
    settle(engine)
    assert [r.path for r in plug.requests] == ["/relay/0?turn=off", "/relay/0?turn=on"]
    stale = Event.objects.get(kind="stale")
    assert "old (max age 120s)" in stale.message and stale.age >= 300


def test_restart_knows_the_heater_is_on_and_re_asserts_it_without_a_new_trigger(http_peer, bench, settings):
    plug = http_peer()
    heater = http_output(plug)
    heater_rule(bench, heater)
    report(bench, "air_temperature", 0)
    first = Engine(Dispatcher())
    first.step()
    settle(first)
    first.dispatcher.shutdown()

    second = Engine(Dispatcher())  # a new process: everything it knows comes from the database
    second.start()
    second.step()
    settle(second)
    second.dispatcher.shutdown()
    assert [r.path for r in plug.requests] == ["/relay/0?turn=on", "/relay/0?turn=on"]
    assert Event.objects.filter(kind="trigger").count() == 1
    assert Event.objects.filter(kind="start", ok=True).count() == 1


def test_minimum_off_time_holds_back_switching_on_again(engine, http_peer, bench):
    plug = http_peer()
    heater = http_output(plug, min_off=timedelta(minutes=5))
    heater_rule(bench, heater)
    report(bench, "air_temperature", 10)
    engine.step()
    settle(engine)  # off
    report(bench, "air_temperature", 0)
    engine.step()
    assert Event.objects.filter(kind="held", message__contains="minimum off time").exists()
    assert [r.path for r in plug.requests] == ["/relay/0?turn=off"]
    heater.refresh_from_db()
    assert heater.wanted_on is True and heater.is_on is False


def test_manual_override_is_sent_by_the_engine_and_holds_against_the_rules(engine, http_peer, bench):
    plug = http_peer()
    heater = http_output(plug)
    heater_rule(bench, heater)
    report(bench, "air_temperature", 0)
    engine.step()
    settle(engine)
    heater.refresh_from_db()
    heater.request_override(False, "grower", 60)
    engine.step()
    settle(engine)
    engine.step()
    assert [r.path for r in plug.requests] == ["/relay/0?turn=on", "/relay/0?turn=off"]
    heater.refresh_from_db()
    heater.request_override(None, "grower", 60)  # handed back: the rule still wants it on
    engine.step()
    settle(engine)
    assert plug.requests[-1].path == "/relay/0?turn=on"


def test_mqtt_output_publishes_on_and_off_to_the_broker(engine, bench):
    host, port = broker_or_skip()
    topic = f"greenhouse-test/{uuid.uuid4().hex}/cmnd/POWER"
    subscriber = Subscriber(topic)
    try:
        relay = Output.objects.create(
            name="Relay board", transport="mqtt", mqtt_broker=f"mqtt://{host}:{port}", mqtt_topic=topic
        )
        heater_rule(bench, relay)
        report(bench, "air_temperature", 0)
        engine.step()
        command = settle(engine)
        assert command.ok and "published" in command.detail
        report(bench, "air_temperature", 20)
        engine.step()
        settle(engine)
        wait_until(lambda: len(subscriber.messages) == 2, what="two MQTT messages")
        assert [payload for _, payload, _ in subscriber.messages] == ["ON", "OFF"]
    finally:
        subscriber.close()


def test_an_unreachable_broker_is_a_failed_command_with_the_reason(engine, bench, settings):
    settings.CONTROL_COMMAND_ATTEMPTS = 1
    relay = Output.objects.create(name="Relay", transport="mqtt", mqtt_broker="mqtt://127.0.0.1:1", mqtt_topic="x")
    heater_rule(bench, relay)
    report(bench, "air_temperature", 0)
    engine.step()
    command = settle(engine)
    assert command.ok is False and "cannot connect to the broker at 127.0.0.1:1" in command.detail


def test_offline_sensor_is_reported_by_email_and_webhook(engine, http_peer, bench, settings):
    smtp = SMTPServer()
    hook = http_peer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.CONTROL_NOTIFY_EMAILS = ["grower@example.org"]
    settings.CONTROL_NOTIFY_WEBHOOK = hook.url("/hook")
    try:
        Rule.objects.create(
            name="Bench board silent",
            kind="offline",
            sensor=bench,
            offline_after=timedelta(minutes=10),
            notify_trigger=True,
        )
        report(bench, "air_temperature", 20, age=11 * 60)
        engine.step()
        for event in Event.objects.filter(kind="notification"):
            assert settle(engine, event).ok, event.detail
        assert len(smtp.messages) == 1 and smtp.messages[0]["to"] == ["grower@example.org"]
        assert "Bench board silent" in smtp.messages[0]["data"]
        body = hook.requests[0].json()
        assert body["rule"] == "Bench board silent" and body["phase"] == "triggered" and body["age_seconds"] >= 660
        assert hook.requests[0].content_type == "application/json"
    finally:
        smtp.close()


def test_a_device_that_reports_itself_offline_fires_the_offline_rule_at_once(engine, bench):
    """An MQTT device's last will: no waiting for `offline_after` of silence; its "online" releases the rule."""
    Rule.objects.create(name="Bench board gone", kind="offline", sensor=bench, offline_after=timedelta(minutes=10))
    report(bench, "air_temperature", 20, age=5)
    engine.step()
    assert Rule.objects.get().phase == "idle"
    Sensor.objects.filter(pk=bench.pk).update(offline_since=timezone.now())
    engine.step()
    assert Rule.objects.get().phase == "triggered"
    Sensor.objects.filter(pk=bench.pk).update(offline_since=None)
    engine.step()
    assert Rule.objects.get().phase != "triggered"


def test_a_flapping_condition_sends_one_notification_per_cool_down(engine, http_peer, bench, settings):
    hook = http_peer()
    settings.CONTROL_NOTIFY_WEBHOOK = hook.url("/hook")
    heater_rule(bench, http_output(http_peer()), notify_trigger=True, notify_release=True)
    for value in (0, 20, 0, 20, 0, 20):
        report(bench, "air_temperature", value)
        engine.step()
    settle(engine, Event.objects.filter(kind="notification").get())
    assert len(hook.requests) == 1 and Rule.objects.get().suppressed == 5


def test_a_manual_output_tells_the_grower_what_to_switch(engine, bench, settings):
    smtp = SMTPServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.CONTROL_NOTIFY_EMAILS = ["grower@example.org"]
    try:
        person = Output.objects.create(name="Frost fleece", transport="manual")
        heater_rule(bench, person)
        report(bench, "air_temperature", 0)
        engine.step()
        assert settle(engine).ok
        assert "Please switch Frost fleece ON" in smtp.messages[0]["data"]
    finally:
        smtp.close()


def test_a_broken_rule_is_logged_and_does_not_stop_the_others(engine, http_peer, bench, caplog):
    Rule.objects.create(name="A broken rule", kind="offline")  # no sensor: bypassed the admin's validation
    heater_rule(bench, http_output(http_peer()))
    report(bench, "air_temperature", 0)
    engine.step()
    assert Rule.objects.get(name="Heat the north bench").phase == "triggered"
    assert "rule 'A broken rule' could not be evaluated" in caplog.text


def test_a_device_password_in_an_output_url_never_reaches_the_event_log_the_pages_or_the_log(
    engine, bench, settings, caplog, admin_client
):
    settings.CONTROL_COMMAND_ATTEMPTS = 1
    port = free_port()  # a port nobody listens on: the plug is off the network
    secret = "Hunter2-device-secret"
    heater = Output.objects.create(
        name="Heater",
        transport="http",
        http_on_url=f"http://admin:{secret}@127.0.0.1:{port}/cm?user=admin&password={secret}&cmnd=Power%20On",
        http_off_url=f"http://127.0.0.1:{port}/cm?PASSWORD={secret}&token={secret}&cmnd=Power%20Off",
    )
    heater_rule(bench, heater)
    report(bench, "air_temperature", 0)
    engine.step()
    command = settle(engine)
    assert command.ok is False and "cmnd=Power%20On" in command.detail  # what was called, still readable
    assert secret not in command.detail
    for page in ("/control/", "/control/events/"):
        assert secret not in admin_client.get(page).content.decode()
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "http://192.168.1.5/cm?user=admin&password=joker&cmnd=Power%20On",
            "http://192.168.1.5/cm?user=***&password=***&cmnd=Power%20On",
        ),
        ("http://admin:joker@10.0.0.2/relay/0?turn=on", "http://***@10.0.0.2/relay/0?turn=on"),
        (
            "https://hooks.example/x?Token=abc&Key=k&pwd=1&auth=2&secret=3&pass=4",
            "https://hooks.example/x?Token=***&Key=***&pwd=***&auth=***&secret=***&pass=***",
        ),
        ("http://10.0.0.3/relay/0?turn=on", "http://10.0.0.3/relay/0?turn=on"),
    ],
)
def test_urls_are_shown_with_their_credentials_masked(url, shown):
    from control.transports import redact, redact_url

    assert redact_url(url) == shown
    assert redact(f"POST {url}: connection refused") == f"POST {shown}: connection refused"


def test_a_device_login_is_sent_to_the_plug_and_never_shown_back(engine, http_peer, bench, admin_client):
    import base64

    plug = http_peer(answer='{"POWER":"ON"}')
    secret = "Hunter2-device-secret"
    tasmota = Output.objects.create(
        name="Tasmota heater",
        http_on_url=plug.url("/cm?user={user}&password={password}&cmnd=Power%20On"),
        device_user="admin",
        device_password=secret,
    )
    shelly = Output.objects.create(
        name="Shelly heater", http_on_url=plug.url("/relay/0?turn=on"), device_user="admin", device_password=secret
    )
    heater_rule(bench, tasmota)
    heater_rule(bench, shelly, name="Second heater")
    report(bench, "air_temperature", 0)
    engine.step()
    wait_until(lambda: len(plug.requests) == 2, what="both commands")
    settle(engine)
    by_path = {request.path.split("?")[0]: request for request in plug.requests}
    assert by_path["/cm"].path == f"/cm?user=admin&password={secret}&cmnd=Power%20On"  # filled in when sent
    assert by_path["/relay/0"].authorization == "Basic " + base64.b64encode(f"admin:{secret}".encode()).decode()
    for output in (tasmota, shelly):
        form = admin_client.get(f"/admin/control/output/{output.pk}/change/").content.decode()
        assert secret not in form  # a password field that renders nothing back
    assert secret not in "".join(Event.objects.values_list("detail", flat=True))


def test_saving_an_output_without_typing_the_password_keeps_it(admin_client):
    heater = Output.objects.create(
        name="Heater", http_on_url="http://192.0.2.1/on", device_user="admin", device_password="keep-me"
    )
    page = admin_client.get(f"/admin/control/output/{heater.pk}/change/")
    form = page.context["adminform"].form
    data = {
        name: field.value() if field.value() is not None else "" for name, field in ((n, form[n]) for n in form.fields)
    }
    data.update({"device_password": "", "clear_device_password": ""})
    data = {key: value for key, value in data.items() if value not in (False, None)}
    response = admin_client.post(f"/admin/control/output/{heater.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    heater.refresh_from_db()
    assert heater.device_password == "keep-me"


def test_a_rule_that_keeps_failing_is_reported_once_and_retried_with_back_off(bench, caplog, monkeypatch):
    from datetime import timedelta

    from control.transports import Dispatcher

    now = [timezone.now()]
    dispatcher = Dispatcher(backoff=0.05)
    engine = Engine(dispatcher, clock=lambda: now[0])
    Rule.objects.create(name="Broken", sensor=bench, metric="air_temperature", threshold=5, release=7)
    calls = []

    def broken(self, when):
        calls.append(when)
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Rule, "observe", broken)
    try:
        for _ in range(60):  # five minutes of passes every 5 s
            engine.evaluate_rules()
            now[0] += timedelta(seconds=5)
        assert 4 <= len(calls) <= 7  # 5, 10, 20, 40, 80, 160 s apart: not 60 times
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and "Broken" in tracebacks[0].getMessage()
        monkeypatch.undo()
        now[0] += timedelta(minutes=10)
        engine.evaluate_rules()
        assert "evaluates again after" in caplog.text
    finally:
        dispatcher.shutdown(5)


def _soil_tray() -> tuple[Location, Sensor, Sensor]:
    tray = Location.objects.create(name="Tray B")
    calibrated = Sensor.objects.create(
        device_id="5c:cf:7f:0a:1b:30", name="Calibrated", soil_dry_raw=800, soil_wet_raw=300
    )
    raw = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:31", name="Uncalibrated")
    calibrated.move_to(tray)
    raw.move_to(tray)
    return tray, calibrated, raw


def test_a_location_rule_mixing_calibrated_and_raw_soil_values_is_refused_with_the_sensors_named():
    from django.core.exceptions import ValidationError

    tray, _, _ = _soil_tray()
    rule = Rule(name="Tray B dry", location=tray, metric="soil_moisture", direction="below", threshold=30, release=35)
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    message = refused.value.message_dict["location"][0]
    assert "would mix calibrated values (%) with raw ones (raw) from Uncalibrated" in message
    Sensor.objects.filter(name="Uncalibrated").update(soil_dry_raw=820, soil_wet_raw=310)
    rule.full_clean()  # all calibrated: one unit
    temperature = Rule(name="Tray B cold", location=tray, metric="air_temperature", threshold=5, release=7)
    temperature.full_clean()  # offsets keep the unit: nothing to refuse


def test_a_sensor_placed_later_without_calibration_never_mixes_into_a_location_mean(engine):
    tray, calibrated, raw = _soil_tray()
    raw.move_to(None)  # the rule is saved with the calibrated sensor alone ...
    rule = Rule(name="Tray B dry", location=tray, metric="soil_moisture", direction="below", threshold=30, release=35)
    rule.full_clean()
    rule.save()
    raw.move_to(tray)  # ... then an uncalibrated one is placed there
    report(calibrated, "soil_moisture", 650.0)  # (800 - 650) / (800 - 300) = 30 %
    report(raw, "soil_moisture", 100.0)  # raw: would drag a mixed mean to nonsense
    engine.step()
    assert Rule.objects.get().last_value == pytest.approx(30.0)
