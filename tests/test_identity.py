"""Sensor identity (sensors.identity): every usual spelling of a device id (a MAC, an MQTT device) is one sensor."""

from __future__ import annotations

import pytest

from sensors.identity import mqtt_device_id, normalise_device_id, normalise_mac, source_of

MAC = "5c:cf:7f:0a:1b:2c"


# --- normalise_mac ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("5c:cf:7f:0a:1b:2c", MAC, id="canonical"),
        pytest.param("5C:CF:7F:0A:1B:2C", MAC, id="upper-case"),
        pytest.param("5c:CF:7f:0A:1b:2C", MAC, id="mixed-case"),
        pytest.param("5c-cf-7f-0a-1b-2c", MAC, id="dashes"),
        pytest.param("5C-CF-7F-0A-1B-2C", MAC, id="upper-dashes"),
        pytest.param("5ccf7f0a1b2c", MAC, id="bare-12-hex"),
        pytest.param("5CCF7F0A1B2C", MAC, id="bare-12-upper-hex"),
        pytest.param("  5c:cf:7f:0a:1b:2c\t", MAC, id="surrounding-whitespace"),
        pytest.param("00:00:00:00:00:00", "00:00:00:00:00:00", id="all-zero"),
        pytest.param("ffffffffffff", "ff:ff:ff:ff:ff:ff", id="all-ff-bare"),
        pytest.param("5ccf7f0a1b2", None, id="11-hex-digits"),
        pytest.param("5ccf7f0a1b2c3", None, id="13-hex-digits"),
        pytest.param("5c:cf:7f:0a:1b", None, id="five-groups"),
        pytest.param("5c:cf:7f:0a:1b:2c:3d", None, id="seven-groups"),
        pytest.param("5c:cf-7f:0a:1b:2c", None, id="mixed-separators"),
        pytest.param("aa:bb-cc:dd:ee:ff", None, id="mixed-separators-aa-ff"),
        pytest.param("5c:cf:7f:0a:1b:2g", None, id="non-hex-digit"),
        pytest.param("zz:zz:zz:zz:zz:zz", None, id="non-hex-groups"),
        pytest.param("5c:cf:7f:a:1b:2c", None, id="single-digit-group"),
        pytest.param("5c.cf.7f.0a.1b.2c", None, id="dot-separators"),
        pytest.param("5ccf.7f0a.1b2c", None, id="cisco-dotted"),
        pytest.param("5c cf 7f 0a 1b 2c", None, id="space-separators"),
        pytest.param("5c:cf:7f:0a:1b:2c:", None, id="trailing-separator"),
        pytest.param("", None, id="empty"),
        pytest.param("kitchen", None, id="word"),
    ],
)
def test_normalise_mac(text: str, expected: str | None) -> None:
    assert normalise_mac(text) == expected


# --- device ids: MACs and MQTT devices ----------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("5C-CF-7F-0A-1B-2C", MAC, id="mac-any-spelling"),
        pytest.param("tasmota:greenhouse_1", "tasmota:greenhouse_1", id="tasmota"),
        pytest.param("Tasmota:Greenhouse_1", "tasmota:greenhouse_1", id="one-spelling"),
        pytest.param(" esphome:bench-esp ", "esphome:bench-esp", id="esphome-trimmed"),
        pytest.param("shelly:shellyplusht-08b61fcb7c24", "shelly:shellyplusht-08b61fcb7c24", id="shelly"),
        pytest.param("mqtt:tray-3.b", "mqtt:tray-3.b", id="generic"),
        pytest.param("tcp:5c:cf:7f:0a:1b:2c", None, id="tcp-is-not-a-prefix"),
        pytest.param("zigbee:bench", None, id="unknown-source"),
        pytest.param("mqtt:", None, id="no-name"),
        pytest.param("mqtt:-x", None, id="leading-dash"),
        pytest.param("mqtt:..", None, id="dot-dot"),
        pytest.param("mqtt:a/b", None, id="slash"),
        pytest.param("mqtt:a b", None, id="space"),
        pytest.param("mqtt:<script>", None, id="markup"),
        pytest.param("mqtt:" + "a" * 65, None, id="too-long"),
        pytest.param("mqtt:ünï", None, id="non-ascii"),
        pytest.param("kitchen", None, id="word"),
    ],
)
def test_normalise_device_id(text: str, expected: str | None) -> None:
    assert normalise_device_id(text) == expected


def test_the_source_is_read_off_the_id():
    assert source_of(MAC) == "tcp"
    assert source_of("tasmota:x") == "tasmota" and source_of("mqtt:x") == "mqtt"
    assert mqtt_device_id("esphome", "Bench-ESP") == "esphome:bench-esp"
    assert mqtt_device_id("tcp", "x") is None
