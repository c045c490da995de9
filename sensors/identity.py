"""Who a sensor is: its device id, in one spelling.

A board on this project's TCP protocol is its Wi-Fi MAC (``5c:cf:7f:0a:1b:2c``); a device that
reports over MQTT is ``<source>:<name>`` in lower case: ``tasmota:<topic>``, ``esphome:<prefix>``,
``shelly:<device-id>``, ``mqtt:<device>`` (the generic JSON form). The two shapes cannot collide:
a MAC has no letters beyond a-f before its first colon.

Plain Python with no Django import (`make lint` enforces it): the parsers, the models, the URLs
and the export all normalise through `normalise_device_id`, so ``5C-CF-7F-0A-1B-2C``,
``5ccf7f0a1b2c`` and ``5c:cf:7f:0a:1b:2c`` are one sensor everywhere, as are
``Tasmota:Greenhouse`` and ``tasmota:greenhouse``.
"""

from __future__ import annotations

import re
from enum import StrEnum

_MAC_SEPARATED_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}\Z")
_MAC_BARE_RE = re.compile(r"[0-9a-f]{12}\Z")
# What may follow "<source>:": an MQTT topic level as the firmwares name devices (Tasmota's
# `tasmota_0A1B2C`, ESPHome's node names, Shelly's `shellyplusht-08b61fcb7c24`), safe in a URL
# path segment and a CSV cell. Anything else is refused, never rewritten into a lookalike.
MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(rf"[a-z0-9][a-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}\Z", re.ASCII)


class Source(StrEnum):
    """Where a sensor's readings come from (the prefix of an MQTT device's id)."""

    TCP = "tcp"  # this project's firmware, one line every 2 s (docs/protocol.md)
    TASMOTA = "tasmota"
    ESPHOME = "esphome"
    SHELLY = "shelly"
    MQTT = "mqtt"  # the generic JSON form (docs/devices.md)

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        labels = {cls.TCP: "TCP board", cls.ESPHOME: "ESPHome", cls.MQTT: "MQTT (generic JSON)"}
        return [(source.value, labels.get(source, source.value.capitalize())) for source in cls]


MQTT_SOURCES = frozenset(source.value for source in Source if source is not Source.TCP)
MAX_DEVICE_ID_LENGTH = len("esphome:") + MAX_NAME_LENGTH


def normalise_mac(text: str) -> str | None:
    """Return the MAC as lowercase ``aa:bb:cc:dd:ee:ff``, or None if it is not one."""
    value = text.strip().lower()
    if _MAC_SEPARATED_RE.match(value):
        digits = value.replace(value[2], "")
    elif _MAC_BARE_RE.match(value):
        digits = value
    else:
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def mqtt_device_id(source: str, name: str) -> str | None:
    """``<source>:<name>`` in lower case, or None if `name` cannot name a device."""
    if source not in MQTT_SOURCES or not name.isascii():  # before lower(): the Kelvin sign would become "k"
        return None
    name = name.lower()
    if _NAME_RE.match(name) is None:
        return None
    return f"{source}:{name}"


def normalise_device_id(text: str) -> str | None:
    """Return the device id in its one spelling, or None if `text` is neither a MAC nor an MQTT device id."""
    mac = normalise_mac(text)
    if mac is not None:
        return mac
    source, sep, name = text.strip().partition(":")
    if not sep or not source.isascii():
        return None
    return mqtt_device_id(source.lower(), name)


def source_of(device_id: str) -> str:
    """The source a (normalised) device id belongs to."""
    prefix, _, _ = device_id.partition(":")
    return prefix if prefix in MQTT_SOURCES else Source.TCP.value
