"""The MQTT source's own rules (sensors.ingest.mqtt), without a broker: URLs, topic filters, what is queued."""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sensors.ingest.mqtt import MqttConfig, MqttSource, MqttUrlError, valid_topic_filter


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", ("127.0.0.1", 1883, None, None, False)),
        ("mqtt://broker.lan:1884", ("broker.lan", 1884, None, None, False)),
        ("mqtts://broker.lan", ("broker.lan", 8883, None, None, True)),
        ("mqtt://grower:p%40ss%3Aword@broker:1883", ("broker", 1883, "grower", "p@ss:word", False)),
        ("mqtt://grower@broker", ("broker", 1883, "grower", None, False)),
    ],
)
def test_broker_urls(url, expected):
    config = MqttConfig.from_url(url)
    assert (config.host, config.port, config.username, config.password, config.tls) == expected


def test_the_broker_as_logged_never_shows_the_password():
    assert MqttConfig.from_url("mqtt://grower:s3cret@broker:1883").where == "mqtt://grower@broker:1883"


@pytest.mark.parametrize(
    "url", ["broker:1883", "http://broker", "mqtt://", "mqtt://b:0", "mqtt://b/x", "mqtt://b?x=1", "mqtt://b#x"]
)
def test_urls_that_name_no_broker_are_refused(url):
    with pytest.raises(MqttUrlError):
        MqttConfig.from_url(url)


@pytest.mark.parametrize(
    ("topic", "valid"),
    [
        ("tele/+/SENSOR", True),
        ("#", True),
        ("greenhouse/#", True),
        ("+/status", True),
        ("a+/b", False),
        ("#/a", False),
        ("a/#b", False),
        ("", False),
        ("a\0b", False),
    ],
)
def test_topic_filters(topic, valid):
    assert valid_topic_filter(topic) is valid


def message(topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessage:
    received = mqtt.MQTTMessage(topic=topic.encode())
    received.payload, received.retain = payload, retain
    return received


def test_a_payload_over_the_limit_is_not_kept_in_memory_while_it_waits():
    source = MqttSource(MqttConfig.from_url("mqtt://127.0.0.1", max_payload=1024), clock=lambda: 12.5)
    source._on_message(source._client, None, message("greenhouse/a/state", b"x" * 2048))
    source._on_message(source._client, None, message("greenhouse/a/state", b'{"temp": 1}', retain=True))
    assert source.take() == [
        (12.5, "greenhouse/a/state", None, False),
        (12.5, "greenhouse/a/state", b'{"temp": 1}', True),
    ]
    assert source.take() == []


def test_the_queue_is_bounded_and_what_it_drops_is_counted():
    source = MqttSource(MqttConfig.from_url("mqtt://127.0.0.1", max_queued=3))
    for index in range(5):
        source._on_message(source._client, None, message("greenhouse/a/state", str(index).encode()))
    assert [payload for _, _, payload, _ in source.take()] == [b"0", b"1", b"2"]
    assert source.counters["dropped_queue_full"] == 2


def test_a_failing_callback_is_logged_and_counted_not_raised(caplog):
    def broken_clock() -> float:
        raise RuntimeError("clock gone")

    source = MqttSource(MqttConfig.from_url("mqtt://127.0.0.1"), clock=broken_clock)
    source._on_message(source._client, None, message("greenhouse/a/state", b"1"))
    assert source.counters["callback_errors"] == 1
    assert "could not queue an MQTT message" in caplog.text and "clock gone" in caplog.text


def test_a_subscription_the_broker_refuses_is_an_error_and_the_granted_ones_are_logged(caplog):
    """The broker's SUBACK, per topic: a refused filter (0x80) would otherwise leave its devices silently empty."""
    source = MqttSource(MqttConfig.from_url("mqtt://127.0.0.1", topics=["tele/+/SENSOR", "shellies/#"]))
    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=0x80)
    with caplog.at_level(logging.INFO, logger="sensors.ingest.mqtt"):
        source._on_subscribe(source._client, None, 1, [granted, refused], None)
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "refused the subscription to shellies/#" in errors[0].getMessage()
    assert "tele/+/SENSOR" not in errors[0].getMessage()
    assert any(record.getMessage() == "subscribed to tele/+/SENSOR" for record in caplog.records)
