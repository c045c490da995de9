"""End to end over MQTT: the real `manage.py collect`, the real Mosquitto, then `export_readings`.

Most tests use the project's broker on 127.0.0.1:1883, each with its own client id and device
names (parallel tests share the broker) and end its persistent session afterwards; the tests
that stop or start a broker use a Mosquitto of their own (tests.peers.PrivateBroker).
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from sensors.models import Reading, RefusedSensor, Sensor
from tests.conftest import a_minute_ago, manage_env, minute_text
from tests.peers import PrivateBroker, Publisher, broker_or_skip, forget_session, wait_until
from tests.test_collect_command import Expected, exported

pytestmark = pytest.mark.django_db(transaction=True)

FAST = ("--flush-interval", "0.3", "--open-minute-interval", "0.3", "--stats-interval", "3600")
START = a_minute_ago()
CLOCK = ("--test-clock-start", repr(START))
MINUTE = minute_text(START)


@pytest.fixture
def broker():
    return broker_or_skip()


@pytest.fixture
def token() -> str:
    """This test's own names on the shared broker."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def client_id(token, broker):
    client = f"gh-test-{token}"
    yield client
    forget_session(client, broker)


@pytest.fixture
def publisher(broker):
    publisher = Publisher(broker)
    yield publisher
    publisher.close()


def mqtt_env(client_id: str, url: str = "mqtt://127.0.0.1:1883", topics: list[str] | None = None, **extra: str):
    env = {"COLLECTOR_MQTT_URL": url, "COLLECTOR_MQTT_CLIENT_ID": client_id, **extra}
    if topics is not None:
        env["COLLECTOR_MQTT_TOPICS"] = ",".join(topics)
    return manage_env(**env)


def subscribed(collector, times: int = 1) -> None:
    wait_until(lambda: collector.output.count("subscribed to") >= times, 15, "the collector to subscribe")


def stored_samples(device: str) -> int:
    return sum(Reading.objects.filter(sensor__device_id=device).values_list("samples", flat=True))


def mine(rows: dict, devices: set[str]) -> dict:
    return {key: row for key, row in rows.items() if key[0] in devices}


def stats_mqtt(output: str) -> str:
    return [line for line in output.splitlines() if "stats mqtt:" in line][-1]


def test_every_firmware_format_ends_up_as_exact_minute_rows(start_collector, broker, client_id, publisher, token):
    """The default subscriptions, one device of each firmware, several messages each: counts, sums, min, max."""
    collector = start_collector(*FAST, *CLOCK, env=mqtt_env(client_id))
    subscribed(collector)
    expected = Expected()
    tasmota, esphome, shelly2, shelly1, generic = (
        f"tasmota:t{token}",
        f"esphome:e{token}",
        f"shelly:shellyplusht-{token}",
        f"shelly:shellyht-{token}",
        f"mqtt:g{token}",
    )
    for step in range(5):
        temp, hum, soil = 20 + step, 50 + 2 * step, 600 + 10 * step
        # Tasmota: an AM2301 and a DS18B20 on one board (the second temperature is kept apart), the soil
        # probe on A0, and the dew point the firmware computes (not stored).
        publisher.publish(
            f"tele/t{token}/SENSOR",
            json.dumps(
                {
                    "Time": "2026-12-01T10:00:00",
                    "AM2301": {"Temperature": temp, "Humidity": hum, "DewPoint": 9.9},
                    "DS18B20": {"Id": "01144A0CB2AA", "Temperature": temp - 5},
                    "ANALOG": {"A0": soil},
                    "TempUnit": "C",
                }
            ),
        )
        expected.add(tasmota, air_temperature=temp, humidity=hum, air_temperature_ds18b20=temp - 5, soil_moisture=soil)
        publisher.publish(f"e{token}/sensor/temperature/state", f"{temp}.0")
        publisher.publish(f"e{token}/sensor/humidity/state", str(hum))
        expected.add(esphome, air_temperature=temp, humidity=hum)
        notify = {
            "src": f"shellyplusht-{token}",
            "method": "NotifyFullStatus" if step == 0 else "NotifyStatus",
            "params": {"ts": 1.0, "temperature:0": {"id": 0, "tC": temp, "tF": 0}},
        }
        if step == 0:  # the full status once, then partial updates of the temperature only
            notify["params"] |= {"humidity:0": {"id": 0, "rh": hum}, "devicepower:0": {"battery": {"percent": 90}}}
            expected.add(shelly2, humidity=hum, battery=90)
        publisher.publish(f"shellyplusht-{token}/events/rpc", json.dumps(notify))
        expected.add(shelly2, air_temperature=temp)
        publisher.publish(f"shellies/shellyht-{token}/sensor/temperature", str(temp))
        expected.add(shelly1, air_temperature=temp)
        publisher.publish(f"greenhouse/g{token}/state", json.dumps({"temp": temp, "hum": hum, "soil": soil}))
        expected.add(generic, air_temperature=temp, humidity=hum, soil_moisture=soil)
    # A Fahrenheit Tasmota: 68 °F is 20 °C.
    publisher.publish(f"tele/f{token}/SENSOR", json.dumps({"SHT3X": {"Temperature": 68.0}, "TempUnit": "F"}))
    expected.add(f"tasmota:f{token}", air_temperature=20)
    devices = {key[0] for key in expected.values}
    total = sum(len(values) for values in expected.values.values())

    wait_until(lambda: sum(map(stored_samples, devices)) >= total, 20, "every sample to be stored")
    assert collector.stop() == 0
    collector.assert_no_traceback()
    assert mine(exported(), devices) == expected.rows(MINUTE)
    assert set(Sensor.objects.filter(device_id__in=devices).values_list("source", flat=True)) == {
        "tasmota",
        "esphome",
        "shelly",
        "mqtt",
    }
    assert token not in "".join(line for line in collector.output.splitlines() if "rejected" in line)
    assert "reconnects 0" in stats_mqtt(collector.output)  # its own clean stop is no reconnect


def test_a_last_will_marks_the_sensor_offline_at_once_and_online_clears_it(
    start_collector, broker, client_id, publisher, token, admin_client
):
    topics = [f"tele/w{token}/SENSOR", f"tele/w{token}/LWT", f"e{token}/status", f"e{token}/sensor/+/state"]
    collector = start_collector(*FAST, env=mqtt_env(client_id, topics=topics))
    subscribed(collector)
    publisher.publish(f"tele/w{token}/SENSOR", json.dumps({"AM2301": {"Temperature": 21.0, "Humidity": 50}}))
    publisher.publish(f"e{token}/sensor/temperature/state", "19.5")
    tasmota = wait_until(lambda: Sensor.objects.filter(device_id=f"tasmota:w{token}").first(), 15, "the sensor")
    wait_until(lambda: Sensor.objects.filter(device_id=f"esphome:e{token}").exists(), 15, "the ESPHome sensor")
    assert tasmota.is_online()

    publisher.publish(f"tele/w{token}/LWT", "Offline", retain=True)
    publisher.publish(f"e{token}/status", "offline", retain=True)
    # Seconds, not SENSOR_OFFLINE_AFTER (3 minutes): the will is written with the next write.
    wait_until(
        lambda: (
            Sensor.objects.filter(
                device_id__in=[f"tasmota:w{token}", f"esphome:e{token}"], offline_since__isnull=False
            ).count()
            == 2
        ),
        5,
        "both sensors to be marked offline",
    )
    tasmota.refresh_from_db()
    assert not tasmota.is_online()
    page = admin_client.get("/").content.decode()
    card = re.search(
        rf'<li class="sensor (\w+)"><a href="/sensors/tasmota:w{token}/">[^<]*</a> <span[^>]*>([^<]*)<', page
    )
    assert card is not None and card.group(1) == "offline" and card.group(2).startswith("offline since"), page

    publisher.publish(f"tele/w{token}/LWT", "Online", retain=True)
    wait_until(
        lambda: Sensor.objects.filter(device_id=f"tasmota:w{token}", offline_since__isnull=True).exists(),
        5,
        "the sensor to be online again",
    )
    tasmota.refresh_from_db()
    assert tasmota.is_online()
    assert Sensor.objects.get(device_id=f"esphome:e{token}").offline_since is not None
    assert collector.stop() == 0
    collector.assert_no_traceback()


def test_messages_published_while_the_collector_was_down_are_stored_once(
    start_collector, broker, client_id, publisher, token
):
    """A restart (an upgrade, a reboot): the persistent session queues what arrives meanwhile; nothing twice."""
    topics = [f"greenhouse/r{token}/state"]
    env = mqtt_env(client_id, topics=topics)
    device = f"mqtt:r{token}"
    expected = Expected()

    def publish(values: range) -> None:
        for value in values:
            publisher.publish(f"greenhouse/r{token}/state", json.dumps({"soil": value}))
            expected.add(device, soil_moisture=value)

    first = start_collector(*FAST, *CLOCK, env=env)
    subscribed(first)
    publish(range(100, 130))
    wait_until(lambda: stored_samples(device) == 30, 15, "the first samples")
    assert first.stop() == 0
    publish(range(200, 260))  # nobody subscribed: the broker queues them for the session
    second = start_collector(*FAST, *CLOCK, env=env)
    subscribed(second)
    publish(range(300, 310))
    wait_until(lambda: stored_samples(device) >= 100, 15, "the queued and the new samples")
    assert second.stop() == 0
    for collector in (first, second):
        collector.assert_no_traceback()
    assert "session resumed" in second.output
    assert mine(exported(), {device}) == expected.rows(MINUTE)


def test_a_broker_restart_under_a_running_collector_loses_nothing_it_accepted(start_collector, tmp_path, token):
    own = PrivateBroker(tmp_path)
    url = f"mqtt://127.0.0.1:{own.port}"
    topic, device = f"greenhouse/b{token}/state", f"mqtt:b{token}"
    expected = Expected()
    collector = start_collector(*FAST, *CLOCK, env=mqtt_env("gh-restart", url=url, topics=[topic]))
    try:
        subscribed(collector)
        publisher = Publisher(own.address)
        for value in range(10, 20):
            publisher.publish(topic, json.dumps({"soil": value}))
            expected.add(device, soil_moisture=value)
        publisher.close()
        wait_until(lambda: stored_samples(device) == 10, 15, "the samples before the restart")

        own.stop()
        wait_until(lambda: "lost the MQTT broker" in collector.output, 10, "the collector to notice")
        own.start()
        # At once, before the collector is back (its back-off is a second or more): the broker keeps
        # these for the collector's session, restored from its persistence file.
        publisher = Publisher(own.address)
        for value in range(30, 50):
            publisher.publish(topic, json.dumps({"soil": value}))
            expected.add(device, soil_moisture=value)
        publisher.close()
        subscribed(collector, times=2)
        wait_until(lambda: stored_samples(device) == 30, 20, "the samples after the restart")
        assert collector.stop() == 0
    finally:
        own.stop()
    collector.assert_no_traceback()
    assert mine(exported(), {device}) == expected.rows(MINUTE)


def test_a_broker_down_at_start_is_a_logged_retry_then_a_connection(start_collector, tmp_path, token):
    from harness.processes import free_port

    port = free_port()
    topic, device = f"greenhouse/d{token}/state", f"mqtt:d{token}"
    collector = start_collector(*FAST, env=mqtt_env("gh-late", url=f"mqtt://127.0.0.1:{port}", topics=[topic]))
    wait_until(lambda: "cannot reach the MQTT broker" in collector.output, 10, "the retry to be logged")
    assert collector.process.poll() is None, "the collector must keep running"
    own = PrivateBroker(tmp_path, port=port)
    try:
        subscribed(collector)
        publisher = Publisher(own.address)
        publisher.publish(topic, json.dumps({"temp": 21.5}))
        publisher.close()
        wait_until(lambda: stored_samples(device) == 1, 15, "the sample")
        assert collector.stop() == 0
    finally:
        own.stop()
    collector.assert_no_traceback()


def test_bad_messages_are_counted_by_reason_and_never_stop_ingest(start_collector, broker, client_id, publisher, token):
    prefix = f"greenhouse/x{token}"
    # Retained junk, waiting on a subscribed topic before the collector subscribes.
    publisher.publish(f"{prefix}-junk/state", b"{definitely not json", retain=True)
    collector = start_collector(
        *FAST,
        env=mqtt_env(
            client_id,
            topics=[f"{prefix}/state", f"{prefix}-junk/state", f"{prefix}/extra", f"x{token}/sensor/+/state"]
            + [f"greenhouse/f{token}-{index}/state" for index in range(8)],
            COLLECTOR_MQTT_MAX_PAYLOAD="1024",
            COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE="5",
        ),
    )
    subscribed(collector)
    publisher.publish(f"{prefix}/state", json.dumps({"temp": 22.5, "hum": "x"}))  # kept, with a rejected field
    publisher.publish(f"{prefix}/state", b"{not json")  # malformed_json
    publisher.publish(f"{prefix}/state", json.dumps({"temp": "warm"}))  # not_a_number
    publisher.publish(f"{prefix}/state", b'{"temp": NaN}')  # not_finite
    publisher.publish(f"{prefix}/state", json.dumps({"temp": 1, "pad": "x" * 2000}))  # payload_too_large
    publisher.publish(f"{prefix}/extra", b"1")  # unknown_topic
    publisher.publish(f"x{token}/sensor/temperature/state", b"nan")  # not_finite (ESPHome's failed read)
    for index in range(8):  # a flood of new devices: 5 a minute are registered
        publisher.publish(f"greenhouse/f{token}-{index}/state", json.dumps({"temp": 20}))
    publisher.publish(f"{prefix}/state", json.dumps({"temp": 23.5}))  # and ingest goes on
    wait_until(lambda: stored_samples(f"mqtt:x{token}") == 2, 15, "the good samples among the bad ones")
    assert collector.stop() == 0
    collector.assert_no_traceback()
    stats = stats_mqtt(collector.output)
    counts = dict(re.findall(r"(\w+)=(\d+)", stats.split("rejected messages:")[1].split(";")[0]))
    assert counts == {
        "malformed_json": "2",  # one of them the retained junk
        "not_a_number": "1",
        "not_finite": "2",
        "payload_too_large": "1",
        "unknown_topic": "1",
        "too_many_new_sensors": "4",  # 5 new devices a minute: mqtt:x... and 4 of the flood
    }
    assert "rejected fields: not_a_number=1" in stats
    assert Sensor.objects.filter(device_id__startswith=f"mqtt:f{token}-").count() == 4
    assert RefusedSensor.objects.filter(device_id__startswith=f"mqtt:f{token}-").count() == 4
    assert "rejected MQTT message on" in collector.output


def test_a_retained_message_is_no_new_sample_and_no_sign_of_life(start_collector, broker, client_id, publisher, token):
    """ESPHome retains its states: a collector that (re)subscribes is sent each last one again.

    A device known only from it is registered (never reported); a registered device silent for
    days stays offline (its alarm must not clear); a live message is a sample as ever.
    """
    from datetime import timedelta

    from django.utils import timezone

    three_days_ago = timezone.now() - timedelta(days=3)
    dead = Sensor.objects.create(device_id=f"esphome:d{token}", source="esphome", last_seen=three_days_ago)
    for prefix in (f"d{token}", f"k{token}"):
        publisher.publish(f"{prefix}/sensor/temperature/state", b"18.5", retain=True)
    topics = [f"d{token}/sensor/+/state", f"k{token}/sensor/+/state"]
    collector = start_collector(*FAST, env=mqtt_env(client_id, topics=topics))
    subscribed(collector)
    new = wait_until(lambda: Sensor.objects.filter(device_id=f"esphome:k{token}").first(), 15, "the new device")
    assert (new.first_seen, new.last_seen) == (None, None) and not new.is_online()
    publisher.publish(f"k{token}/sensor/temperature/state", b"19.0", retain=True)  # live: a new sample
    wait_until(lambda: stored_samples(f"esphome:k{token}") == 1, 15, "the live sample")
    assert collector.stop() == 0
    collector.assert_no_traceback()
    new.refresh_from_db()
    assert new.last_seen is not None
    assert list(Reading.objects.filter(sensor=new).values_list("value_sum", flat=True)) == [19.0]
    dead.refresh_from_db()
    assert dead.last_seen == three_days_ago and not dead.is_online() and not dead.readings.exists()
    assert "retained (not stored) 2" in stats_mqtt(collector.output)


def test_the_tcp_boards_report_beside_the_mqtt_devices(start_collector, broker, client_id, publisher, token):
    import socket

    collector = start_collector(*FAST, *CLOCK, env=mqtt_env(client_id, topics=[f"greenhouse/m{token}/state"]))
    subscribed(collector)
    with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as board:
        board.sendall(b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c\n")
        publisher.publish(f"greenhouse/m{token}/state", json.dumps({"soil": 500}))
        wait_until(
            lambda: stored_samples("5c:cf:7f:0a:1b:2c") == 3 and stored_samples(f"mqtt:m{token}") == 1, 15, "both"
        )
    assert collector.stop() == 0
    collector.assert_no_traceback()
    assert set(Sensor.objects.values_list("device_id", "source")) >= {
        ("5c:cf:7f:0a:1b:2c", "tcp"),
        (f"mqtt:m{token}", "mqtt"),
    }
    assert Sensor.objects.get(device_id=f"mqtt:m{token}").last_peer is None


def test_a_sigkill_after_the_journal_sync_loses_no_mqtt_sample(
    start_collector, broker, client_id, publisher, token, journal_dir
):
    """MQTT samples are journaled like lines: nothing was written to the database, the restart replays them once."""
    topic, device = f"greenhouse/j{token}/state", f"mqtt:j{token}"
    env = mqtt_env(client_id, topics=[topic])
    expected = Expected()
    never = ("--flush-interval", "3600", "--open-minute-interval", "3600", "--stats-interval", "3600")
    first = start_collector(*never, *CLOCK, env=env)
    subscribed(first)
    for value in range(40):
        publisher.publish(topic, json.dumps({"soil": 100 + value}))
        expected.add(device, soil_moisture=100 + value)
    wait_until(lambda: any(journal_dir.rglob("*.seg")), 10, "the journal's first segment")
    time.sleep(1.0 + 1.0)  # COLLECTOR_JOURNAL_SYNC_INTERVAL and a margin: the last record is fsynced
    first.kill()
    assert stored_samples(device) == 0, "nothing was written to the database before the kill"
    second = start_collector(*FAST, *CLOCK, env=env)
    wait_until(lambda: stored_samples(device) == 40, 20, "the replay")
    assert second.stop() == 0
    second.assert_no_traceback()
    assert mine(exported(), {device}) == expected.rows(MINUTE)
