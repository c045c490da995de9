"""MQTT payloads of each firmware -> samples: the fixtures are the firmwares' documented examples.

Sources (docs/devices.md lists them too): Tasmota's docs (AM2301.md, BME280.md, DS18x20.md, ADC.md,
ESP32.md, JSON-Status-Responses.md), ESPHome's mqtt component (`<prefix>/sensor/<object_id>/state`,
a plain number, `nan` for a failed read), Shelly's Gen2 notifications (a Plus H&T NotifyFullStatus)
and Gen1 `shellies/<id>/sensor/<kind>` topics.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.ingest.devices import Availability, MessageParser, MessageReason, snake
from sensors.ingest.protocol import Accepted, Reason, Rejected


def parse(topic: str, payload: bytes | None):
    """A fresh parser each time: what one message gives on its own (the memory across messages is tested apart)."""
    return MessageParser().parse(topic, payload)


# --- Tasmota, verbatim from its documentation ------------------------------------------------
AM2301 = b'{"Time":"2019-01-01T00:00:00","AM2301":{"Temperature":24.6,"Humidity":58.2},"TempUnit":"C"}'
AM2301_DEWPOINT = (
    b'{"Time":"2026-12-01T10:00:00","AM2301":{"Temperature":24.6,"Humidity":58.2,"DewPoint":15.8},"TempUnit":"C"}'
)
BME280 = (
    b'{"Time":"2019-11-03T19:34:28","BME280":{"Temperature":21.7,"Humidity":66.6,"Pressure":988.6},'
    b'"PressureUnit":"hPa","TempUnit":"C"}'
)
DS18B20_MANY = (
    b'{"Time":"2021-01-02T09:09:44","DS18B20-1":{"Id":"00000566CC39","Temperature":13.3},'
    b'"DS18B20-2":{"Id":"0000059352D4","Temperature":1.2},"DS18B20-3":{"Id":"000005937C90","Temperature":22.5},'
    b'"TempUnit":"C"}'
)
ANALOG = b'{"Time":"2019-01-14T19:36:51","ANALOG":{"A0":1024}}'
ESP32 = b'{"Time":"2021-01-01T00:00:00","ESP32":{"Temperature":41.7},"TempUnit":"C"}'
FAHRENHEIT = (
    b'{"StatusSNS":null,"Time":"2018-02-07T20:16:19","DHT11":{"Temperature":78.8,"Humidity":27.0},'
    b'"SHT3X":{"Temperature":74.8,"Humidity":18.9},"TempUnit":"F"}'
)
MMHG = (
    b'{"Time":"2024-02-25T11:27:00","DS18B20-1":{"Id":"3C01D0756611","Temperature":21.125},'
    b'"BMP280":{"Temperature":28.520,"Pressure":753.3},"PressureUnit":"mmHg","TempUnit":"C"}'
)

# --- Shelly Gen2: a Plus H&T's NotifyFullStatus (trimmed of its wifi/sys objects) ---------------
SHELLY_FULL = json.dumps(
    {
        "src": "shellyplusht-b8d61a8b17cc",
        "dst": "shellyplusht-b8d61a8b17cc/events",
        "method": "NotifyFullStatus",
        "params": {
            "ts": 1680962879.62,
            "ble": {},
            "cloud": {"connected": False},
            "devicepower:0": {"id": 0, "battery": {"V": 5.43, "percent": 87}, "external": {"present": False}},
            "humidity:0": {"id": 0, "rh": 42.2},
            "mqtt": {"connected": True},
            "temperature:0": {"id": 0, "tC": 19.8, "tF": 67.6},
            "sys": {"mac": "B8D61A8B17CC", "wakeup_period": 600},
        },
    }
).encode()


def values(parsed) -> dict[str, float]:
    assert isinstance(parsed, Accepted), parsed
    return dict(parsed.values)


def test_tasmota_dht22_gives_temperature_and_humidity_of_the_topic_device():
    parsed = parse("tele/greenhouse-1/SENSOR", AM2301)
    assert parsed.mac == "tasmota:greenhouse-1"
    assert values(parsed) == {"air_temperature": 24.6, "humidity": 58.2}


def test_tasmota_dew_point_is_computed_by_the_firmware_so_it_is_not_stored():
    parsed = parse("tele/Tasmota_0A1B2C/SENSOR", AM2301_DEWPOINT)
    assert parsed.mac == "tasmota:tasmota_0a1b2c"  # ids are lower case
    assert values(parsed) == {"air_temperature": 24.6, "humidity": 58.2}
    assert parsed.dropped == ()


def test_tasmota_bme280_adds_pressure_in_hpa():
    assert values(parse("tele/bench/SENSOR", BME280)) == {"air_temperature": 21.7, "humidity": 66.6, "pressure": 988.6}


def test_tasmota_pressure_in_mmhg_is_converted_to_hpa():
    got = values(parse("tele/bench/SENSOR", MMHG))
    assert got["pressure"] == pytest.approx(753.3 * 1.333224)
    # The first object keeps the well-known metric, the next one's name is added.
    assert got["air_temperature"] == 21.125 and got["air_temperature_bmp280"] == 28.520


def test_a_second_sensor_object_of_the_same_quantity_gets_its_own_name():
    got = values(parse("tele/bench/SENSOR", DS18B20_MANY))
    assert got == {"air_temperature": 13.3, "air_temperature_ds18b20_2": 1.2, "air_temperature_ds18b20_3": 22.5}


def test_a_failed_read_of_the_first_probe_never_puts_the_second_in_its_series():
    """The AM2301 reports air_temperature here: when it sends null or is left out, the DS18B20 keeps its own name."""
    parser = MessageParser()
    both = b'{"AM2301":{"Temperature":21.0,"Humidity":50},"DS18B20":{"Id":"01","Temperature":12.5}}'
    assert values(parser.parse("tele/bed/SENSOR", both)) == {
        "air_temperature": 21.0,
        "humidity": 50.0,
        "air_temperature_ds18b20": 12.5,
    }
    failed = b'{"AM2301":{"Temperature":null,"Humidity":null},"DS18B20":{"Id":"01","Temperature":12.6}}'
    parsed = parser.parse("tele/bed/SENSOR", failed)
    assert values(parsed) == {"air_temperature_ds18b20": 12.6} and parsed.dropped == (Reason.NOT_A_NUMBER,) * 2
    missing = b'{"DS18B20":{"Id":"01","Temperature":12.7}}'
    assert values(parser.parse("tele/bed/SENSOR", missing)) == {"air_temperature_ds18b20": 12.7}


def test_a_second_probe_is_held_to_its_quantitys_bounds():
    parsed = parse(
        "tele/bed/SENSOR", b'{"AM2301":{"Temperature":21,"Humidity":50},"X":{"Temperature":5000,"Humidity":500}}'
    )
    assert values(parsed) == {"air_temperature": 21.0, "humidity": 50.0}
    assert parsed.dropped == (Reason.OUT_OF_RANGE, Reason.OUT_OF_RANGE)
    rpc = {
        "method": "NotifyStatus",
        "params": {"temperature:1": {"tC": 5000}, "devicepower:1": {"battery": {"percent": 500}}},
    }
    assert parse("s1/events/rpc", json.dumps(rpc).encode()) == Rejected(Reason.OUT_OF_RANGE)
    odd = {"method": "NotifyStatus", "params": {"temperature:00": {"tC": 20}, "temperature:1": {"tC": 19}}}
    parsed = parse("s1/events/rpc", json.dumps(odd).encode())
    assert values(parsed) == {"air_temperature_1": 19.0} and parsed.dropped == (Reason.MALFORMED_FIELD,)


def test_a_pressure_unit_that_cannot_be_converted_is_a_rejected_field():
    parsed = parse("tele/bed/SENSOR", b'{"BME280":{"Temperature":20,"Pressure":30},"PressureUnit":"furlongs"}')
    assert values(parsed) == {"air_temperature": 20.0} and parsed.dropped == (MessageReason.UNKNOWN_UNIT,)


def test_tasmota_analog_a0_is_the_soil_probe():
    assert values(parse("tele/bed-3/SENSOR", ANALOG)) == {"soil_moisture": 1024.0}


def test_the_esp32_chip_temperature_is_never_the_air_temperature():
    assert values(parse("tele/bed-3/SENSOR", ESP32)) == {"esp32_temperature": 41.7}


def test_fahrenheit_is_converted_to_celsius():
    got = values(parse("tele/bench/SENSOR", FAHRENHEIT))
    assert got["air_temperature"] == pytest.approx(26.0)  # 78.8 °F
    assert got["air_temperature_sht3x"] == pytest.approx(23.777, abs=1e-3)
    assert got["humidity"] == 27.0 and got["humidity_sht3x"] == 18.9


def test_tasmota_global_copy_is_not_a_second_sensor():
    payload = (
        b'{"AM2301":{"Temperature":24.6,"Humidity":58.2},"Global":{"Temperature":24.6,"Humidity":58.2},"TempUnit":"C"}'
    )
    assert values(parse("tele/bench/SENSOR", payload)) == {"air_temperature": 24.6, "humidity": 58.2}


def test_tasmota_lwt_is_availability():
    assert parse("tele/bench/LWT", b"Offline") == Availability("tasmota:bench", False)
    assert parse("tele/bench/LWT", b"Online") == Availability("tasmota:bench", True)
    assert parse("tele/bench/LWT", b"Maybe") == Rejected(MessageReason.INVALID_STATUS)


def test_tasmota_null_readings_are_counted_not_stored():
    parsed = parse("tele/bench/SENSOR", b'{"AM2301":{"Temperature":null,"Humidity":null},"TempUnit":"C"}')
    assert parsed == Rejected(Reason.NOT_A_NUMBER)


# --- ESPHome ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("object_id", "metric"),
    [
        ("temperature", "air_temperature"),
        ("humidity", "humidity"),
        ("soil_moisture", "soil_moisture"),
        ("battery_level", "battery"),
        ("wifi_signal", "wifi_signal"),  # no alias: the object id is an extra metric
    ],
)
def test_esphome_states_are_plain_numbers_named_by_object_id(object_id, metric):
    parsed = parse(f"greenhouse-esp/sensor/{object_id}/state", b"21.5")
    assert parsed.mac == "esphome:greenhouse-esp"
    assert values(parsed) == {metric: 21.5}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"nan", Reason.NOT_FINITE),
        (b"None", Reason.NOT_A_NUMBER),
        (b"", Reason.NOT_A_NUMBER),
        (b"1_000", Reason.NOT_A_NUMBER),
    ],
)
def test_an_esphome_failed_read_is_a_counted_rejection(payload, reason):
    assert parse("node/sensor/temperature/state", payload) == Rejected(reason)


def test_esphome_status_is_availability():
    assert parse("node/status", b"offline") == Availability("esphome:node", False)
    assert parse("node/status", b"online") == Availability("esphome:node", True)


# --- Shelly --------------------------------------------------------------------------------------
def test_shelly_gen2_full_status_gives_temperature_humidity_and_battery():
    parsed = parse("shellyplusht-b8d61a8b17cc/events/rpc", SHELLY_FULL)
    assert parsed.mac == "shelly:shellyplusht-b8d61a8b17cc"
    assert values(parsed) == {"air_temperature": 19.8, "humidity": 42.2, "battery": 87.0}


def test_a_shelly_partial_notify_status_samples_only_what_it_carries():
    notify = {"src": "x", "method": "NotifyStatus", "params": {"ts": 1.0, "temperature:0": {"id": 0, "tC": 20.1}}}
    assert values(parse("shellyplusht-1/events/rpc", json.dumps(notify).encode())) == {"air_temperature": 20.1}


def test_a_shelly_on_external_power_reports_no_battery():
    notify = {
        "method": "NotifyStatus",
        "params": {"devicepower:0": {"battery": {"V": 0.43, "percent": 0}, "external": {"present": True}}},
    }
    assert parse("shellyplusht-1/events/rpc", json.dumps(notify).encode()) is None


def test_shelly_notifications_without_measurements_are_ignored():
    event = {"method": "NotifyEvent", "params": {"events": [{"component": "sys", "event": "sleep"}]}}
    assert parse("shellyplusht-1/events/rpc", json.dumps(event).encode()) is None
    wifi = {"method": "NotifyStatus", "params": {"wifi": {"rssi": -60}}}
    assert parse("shellyplusht-1/events/rpc", json.dumps(wifi).encode()) is None


def test_shelly_gen1_sensor_topics_and_online():
    assert values(parse("shellies/shellyht-6fd9b1/sensor/temperature", b"22.5")) == {"air_temperature": 22.5}
    assert values(parse("shellies/shellyht-6fd9b1/sensor/humidity", b"48")) == {"humidity": 48.0}
    assert values(parse("shellies/shellyht-6fd9b1/sensor/battery", b"97")) == {"battery": 97.0}
    assert parse("shellies/shellyht-6fd9b1/sensor/ext_power", b"false") is None
    assert parse("shellies/shellyht-6fd9b1/online", b"false") == Availability("shelly:shellyht-6fd9b1", False)
    assert parse("shellyplusht-1/online", b"true") == Availability("shelly:shellyplusht-1", True)


# --- the generic JSON form -------------------------------------------------------------------------
def test_the_generic_form_takes_the_tcp_protocol_keys_and_aliases():
    parsed = parse("greenhouse/tray-3/state", b'{"air_temperature": 21.5, "hum": 48, "soil_moisture": 612, "lux": 900}')
    assert parsed.mac == "mqtt:tray-3"
    assert values(parsed) == {"air_temperature": 21.5, "humidity": 48.0, "soil_moisture": 612.0, "lux": 900.0}


def test_the_generic_form_keeps_good_fields_and_counts_bad_ones():
    parsed = parse("greenhouse/tray-3/state", b'{"temp": "warm", "hum": 101, "soil": 612, "x y": 1, "nested": {}}')
    assert values(parsed) == {"soil_moisture": 612.0}
    assert sorted(parsed.dropped) == sorted(
        [Reason.NOT_A_NUMBER, Reason.OUT_OF_RANGE, Reason.INVALID_KEY, Reason.MALFORMED_FIELD]
    )


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tele/bench/SENSOR", b"{not json", MessageReason.MALFORMED_JSON),
        ("tele/bench/SENSOR", b"[1, 2]", MessageReason.MALFORMED_JSON),
        ("tele/bench/SENSOR", b"\xff\xfe", MessageReason.MALFORMED_JSON),
        ("tele/bench/SENSOR", b"[" * 100_000, MessageReason.PAYLOAD_TOO_LARGE),
        ("tele/bench/SENSOR", b"[" * 60_000, MessageReason.MALFORMED_JSON),  # nested past the decoder's depth
        ("greenhouse/x/state", b'{"temp": NaN}', Reason.NOT_FINITE),
        ("greenhouse/x/state", b'{"temp": Infinity}', Reason.NOT_FINITE),
        ("greenhouse/x/state", b'{"temp": 1e999}', Reason.NOT_FINITE),
        ("greenhouse/x/state", b'{"temp": true}', Reason.NOT_A_NUMBER),
        ("greenhouse/x/state", b'{"temp": ' + b"9" * 5000 + b"}", MessageReason.MALFORMED_JSON),
        ("greenhouse/x/state", b"{}", Reason.NO_VALUES),
        ("greenhouse/bad device/state", b'{"temp": 1}', MessageReason.INVALID_DEVICE),
        ("greenhouse/" + "x" * 65 + "/state", b'{"temp": 1}', MessageReason.INVALID_DEVICE),
        ("some/other/topic/entirely", b"1", MessageReason.UNKNOWN_TOPIC),
        ("x" * 300 + "/status", b"online", MessageReason.TOPIC_TOO_LONG),
        ("tele/\u212aitchen/SENSOR", b'{"A":{"Temperature":1}}', MessageReason.INVALID_DEVICE),  # the Kelvin sign
        ("greenhouse/x/state", None, MessageReason.PAYLOAD_TOO_LARGE),  # refused by the source, unread
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic, payload, reason):
    parsed = parse(topic, payload)
    assert isinstance(parsed, Rejected) and parsed.reason == reason, parsed


def test_the_payload_limit_is_a_setting():
    assert parse("greenhouse/x/state", b'{"temp": 1}' + b" " * 100) != Rejected(MessageReason.PAYLOAD_TOO_LARGE)
    small = MessageParser(max_payload=64).parse
    assert small("greenhouse/x/state", b'{"temp": 1}' + b" " * 100).reason == MessageReason.PAYLOAD_TOO_LARGE


@given(st.text(max_size=40), st.binary(max_size=300))
def test_no_topic_or_payload_raises(topic, payload):
    """Whatever a hostile LAN publishes, the parser answers; it never raises into the ingest loop."""
    for shaped in (topic, f"tele/{topic}/SENSOR", f"greenhouse/{topic}/state", f"{topic}/events/rpc"):
        result = parse(shaped, payload)
        assert result is None or isinstance(result, Accepted | Rejected | Availability)


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_no_json_document_raises(document):
    payload = json.dumps(document).encode()
    for topic in ("tele/t/SENSOR", "greenhouse/g/state", "s/events/rpc"):
        result = parse(topic, payload)
        if isinstance(result, Accepted):
            assert all(isinstance(value, float) for _, value in result.values)


def test_a_flood_of_long_topics_and_keys_keeps_the_parser_small():
    """A hostile publisher cannot make the parser hold its junk: long topics are refused unkept, long keys uncached."""
    import tracemalloc

    parser = MessageParser()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for index in range(300):
        parser.parse(f"{index}{'y' * 60_000}/status", b"online")
        parser.parse("tele/t/SENSOR", json.dumps({"A": {f"{index}{'k' * 60_000}": 1}}).encode())
        parser.parse("greenhouse/g/state", json.dumps({f"{index}{'k' * 60_000}": 1}).encode())
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 2_000_000, f"{grown} bytes kept"


def test_snake_case_of_device_names():
    assert snake("CarbonDioxide") == "carbon_dioxide"
    assert snake("DS18B20-1") == "ds18b20_1"
    assert snake("SHT3X-0x44") == "sht3x_0x44"
