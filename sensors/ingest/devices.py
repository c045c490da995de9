"""MQTT messages from the firmwares growers already run -> the same samples a TCP line gives.

Plain Python with no Django import (and no paho: `sensors.ingest.mqtt` receives, this decides).
`MessageParser.parse(topic, payload)` returns an `Accepted` (a device id, metric values and the
reasons of fields left out, exactly as `protocol.parse_line` does for a TCP line), an `Availability`
(a last will or status: online/offline), a `Rejected` with a reason, or None for a message that
carries no measurement (a Shelly notification about its Wi-Fi, an ESPHome text state).

Formats (docs/devices.md has the setup per firmware and the full mapping table):

- Tasmota: ``tele/<topic>/SENSOR`` JSON, one object per sensor (``{"AM2301": {"Temperature": ..}}``),
  ``tele/<topic>/LWT`` ``Online``/``Offline``. Device ``tasmota:<topic>``.
- ESPHome: ``<prefix>/sensor/<object_id>/state`` a plain number, ``<prefix>/status``
  ``online``/``offline``. Device ``esphome:<prefix>``.
- Shelly Gen2: ``<device-id>/events/rpc`` ``NotifyStatus``/``NotifyFullStatus``,
  ``<device-id>/online`` ``true``/``false``; Gen1: ``shellies/<device-id>/sensor/<kind>`` a plain
  number, ``shellies/<device-id>/online``. Device ``shelly:<device-id>``.
- Generic JSON for home-made boards: ``greenhouse/<device>/state`` ``{"air_temperature": 21.5}``,
  ``greenhouse/<device>/status`` ``online``/``offline``. Device ``mqtt:<device>``.

Values a device computes from others (Tasmota's ``DewPoint``) are not measurements and are left
out silently, like housekeeping fields (a DS18B20's ``Id``). When one message reports a quantity
twice (an AM2301 and a DS18B20 on one Tasmota), the first object keeps the metric and the others
get ``<metric>_<object>``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sensors.identity import Source, mqtt_device_id
from sensors.metrics import bounds, device_metric, is_name

from .protocol import MAX_FIELDS_PER_LINE, Accepted, Reason, Rejected, parse_number

MAX_PAYLOAD_BYTES = 64 * 1024
# No supported topic is longer (a device name is at most 64 characters): a longer one is refused
# before anything is kept of it, so a flood of huge topics cannot fill the parser's tables.
MAX_TOPIC_LENGTH = 256
MAX_KEY_LENGTH = 64  # a field name longer than this cannot name a metric (at most 32 characters)

DEFAULT_TOPICS: tuple[str, ...] = (
    "tele/+/SENSOR",  # Tasmota telemetry
    "tele/+/LWT",  # Tasmota last will: Online / Offline
    "+/sensor/+/state",  # ESPHome sensor states
    "+/status",  # ESPHome availability: online / offline
    "+/events/rpc",  # Shelly Gen2 notifications
    "+/online",  # Shelly Gen2 availability: true / false
    "shellies/+/sensor/+",  # Shelly Gen1 sensors
    "shellies/+/online",  # Shelly Gen1 availability
    "greenhouse/+/state",  # the generic JSON form
    "greenhouse/+/status",  # its availability: online / offline
)


class MessageReason:
    """Why a whole MQTT message was refused (on top of protocol.Reason's field reasons)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TOPIC = "unknown_topic"  # a topic of none of the shapes above (COLLECTOR_MQTT_TOPICS too wide)
    INVALID_DEVICE = "invalid_device"  # a topic level that cannot name a device
    INVALID_STATUS = "invalid_status"  # an availability payload other than online/offline
    TOPIC_TOO_LONG = "topic_too_long"
    # single fields
    UNKNOWN_UNIT = "unknown_unit"  # a Tasmota PressureUnit the collector cannot convert to hPa


@dataclass(frozen=True, slots=True)
class Availability:
    """A device's last will or birth message: is it connected to the broker?"""

    device: str
    online: bool


Parsed = Accepted | Availability | Rejected | None

# Tasmota: fields computed by the firmware from the others, never stored as measurements.
_COMPUTED = frozenset({"dewpoint", "seapressure", "abshumidity", "heatindex"})
# Tasmota: fields that describe a sensor object rather than measure (a DS18B20's 1-Wire id).
_DESCRIPTIVE = frozenset({"id", "type", "model", "name", "total_start_time"})
# Tasmota objects for the chip itself: their temperature is the ESP's, never the air's.
_CHIP_OBJECTS = frozenset({"esp32", "esp8266"})
_PRESSURE_TO_HPA = {"hpa": 1.0, "mbar": 1.0, "mmhg": 1.333224, "inhg": 33.86389}
# Shelly Gen2 components that carry measurements, and the field that holds each.
_SHELLY_COMPONENTS = {"temperature": (("tC", "air_temperature"),), "humidity": (("rh", "humidity"),)}
# Shelly Gen1 sensor topics that are not measurements (booleans, lists, codes).
_SHELLY_GEN1_IGNORED = frozenset({"act_reasons", "ext_power", "error", "charger", "sensor_error", "state"})
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SLUG = re.compile(r"[^a-z0-9]+")
_AVAILABILITY = {"online": True, "offline": False, "true": True, "false": False}


def snake(name: str) -> str:
    """``CarbonDioxide`` -> ``carbon_dioxide``, ``DS18B20-1`` -> ``ds18b20_1``: a device's name as a metric key.

    Non-ASCII letters never become ASCII ones (the Kelvin sign is not a "k"): they are separators."""
    if len(name) > MAX_KEY_LENGTH:
        return _snake(name[: MAX_KEY_LENGTH + 1])  # too long to name a metric either way
    return _snake(name)


@lru_cache(maxsize=4096)
def _snake(name: str) -> str:
    return _SLUG.sub("_", _CAMEL.sub("_", name).encode("ascii", "replace").decode().lower()).strip("_")


def _number(value: object) -> float | str:
    """A JSON value as a float, or the reason it is refused (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Reason.NOT_A_NUMBER
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float
        return Reason.NOT_FINITE
    return number if math.isfinite(number) else Reason.NOT_FINITE


def _text_number(payload: bytes) -> float | str:
    """A plain-text number (ESPHome, Shelly Gen1), or the reason it is refused."""
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        return Reason.INVALID_ENCODING
    return parse_number(text)  # the TCP protocol's numbers: no "1_000", "0x10"; "nan" is not finite


class _Fields:
    """The values of one message as they are collected: checked, named, each metric once."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.dropped: list[str] = []

    def add(self, key: str, value: float | str, quantity: str = "") -> None:
        """Add `value` under metric `key`; `quantity` (for ``air_temperature_ds18b20``) is the metric whose
        bounds it is held to, `key` itself by default."""
        if isinstance(value, str):
            self.dropped.append(value)
            return
        if not is_name(key):
            self.dropped.append(Reason.INVALID_KEY)
            return
        if key in self.values:
            self.dropped.append(Reason.DUPLICATE_FIELD)
            return
        if len(self.values) >= MAX_FIELDS_PER_LINE:
            self.dropped.append(Reason.TOO_MANY_FIELDS)
            return
        low, high = bounds(quantity or key)
        if not low <= value <= high:
            self.dropped.append(Reason.OUT_OF_RANGE)
            return
        self.values[key] = value

    def result(self, device: str) -> Accepted | Rejected | None:
        if self.values:
            return Accepted(device, tuple(self.values.items()), tuple(self.dropped))
        if self.dropped:
            return Rejected(self.dropped[0])
        return None  # nothing measured (a notification about something else)


def _json_object(payload: bytes) -> dict | Rejected:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Rejected(MessageReason.MALFORMED_JSON)
    if not isinstance(document, dict):
        return Rejected(MessageReason.MALFORMED_JSON, "not a JSON object")
    return document


def _availability(device: str, payload: bytes) -> Availability | Rejected:
    state = _AVAILABILITY.get(payload.strip().lower().decode("ascii", "replace"))
    if state is None:
        return Rejected(MessageReason.INVALID_STATUS)
    return Availability(device, state)


def _generic_metric(key: str) -> str | None:
    """The metric a generic JSON key names (the TCP protocol's keys and aliases), None if it cannot name one."""
    if len(key) > MAX_KEY_LENGTH or not key.isascii():
        return None
    return _generic_metric_of(key)


@lru_cache(maxsize=4096)
def _generic_metric_of(key: str) -> str | None:
    name = key.strip().lower()
    return device_metric(name) if is_name(name) else None


class MessageParser:
    """Topic and payload -> `Parsed`, by the topic's shape (see the module docstring)."""

    # Topics seen recently -> how to read them: a device publishes to the same few topics all day.
    # Bounded (cleared when full), so a flood of new topics cannot grow it.
    MAX_CACHED_TOPICS = 20_000
    # (device, metric) -> the Tasmota sensor object that reports it under the metric's own name.
    MAX_OWNERS = 100_000

    def __init__(self, max_payload: int = MAX_PAYLOAD_BYTES) -> None:
        self.max_payload = max_payload
        self._topics: dict[str, tuple[str, list[str], Callable[[str, list[str], bytes], Parsed]] | Rejected] = {}
        self._owners: dict[tuple[str, str], str] = {}

    def parse(self, topic: str, payload: bytes | None) -> Parsed:
        """`payload` None: a message the MQTT source refused to keep (over the size limit)."""
        if payload is None or len(payload) > self.max_payload:
            return Rejected(MessageReason.PAYLOAD_TOO_LARGE)
        if len(topic) > MAX_TOPIC_LENGTH:
            return Rejected(MessageReason.TOPIC_TOO_LONG)
        known = self._topics.get(topic)
        if known is None:
            if len(self._topics) >= self.MAX_CACHED_TOPICS:
                self._topics.clear()
            known = self._topics[topic] = self._read_topic(topic)
        if isinstance(known, Rejected):
            return known
        device, levels, handler = known
        return handler(device, levels, payload)

    def _read_topic(self, topic: str):
        """(device id, levels, handler) for a topic, or why it names no device."""
        levels = topic.split("/")
        route = self._route(levels)
        if route is None:
            return Rejected(MessageReason.UNKNOWN_TOPIC, topic)
        source, name, handler = route
        device = mqtt_device_id(source, name)
        if device is None:
            return Rejected(MessageReason.INVALID_DEVICE, name)
        return device, levels, handler

    def _route(self, levels: list[str]):
        """(source, device name, handler) for a topic's levels, or None."""
        count, first, last = len(levels), levels[0], levels[-1]
        if count == 3 and first == "tele" and last in ("SENSOR", "LWT"):
            return Source.TASMOTA, levels[1], self._tasmota
        if first == "shellies" and ((count == 4 and levels[2] == "sensor") or (count == 3 and last == "online")):
            return Source.SHELLY, levels[1], self._shelly_gen1
        if count == 3 and first == "greenhouse" and last in ("state", "status"):
            return Source.MQTT, levels[1], self._generic
        if (count == 4 and levels[1] == "sensor" and last == "state") or (count == 2 and last == "status"):
            return Source.ESPHOME, first, self._esphome
        if (count == 3 and levels[1:] == ["events", "rpc"]) or (count == 2 and last == "online"):
            return Source.SHELLY, first, self._shelly_gen2
        return None

    # --- Tasmota ---------------------------------------------------------------------------
    def _tasmota(self, device: str, levels: list[str], payload: bytes) -> Parsed:
        if levels[2] == "LWT":
            return _availability(device, payload)
        document = _json_object(payload)
        if isinstance(document, Rejected):
            return document
        fahrenheit = str(document.get("TempUnit", "C")).upper() == "F"
        pressure_factor = _PRESSURE_TO_HPA.get(str(document.get("PressureUnit", "hPa")).lower())
        fields = _Fields()
        claimed: set[str] = set()  # metrics an earlier object of this message reports
        for object_name, sensor in document.items():
            if not isinstance(sensor, dict):
                continue  # "Time", "TempUnit", ...: about the message, not a measurement
            object_key = snake(object_name)
            if object_key == "global":
                continue  # SetOption2: a copy of another object's values, not a sensor of its own
            for field_name, value in sensor.items():
                key = snake(field_name)
                if key.replace("_", "") in _COMPUTED or key in _DESCRIPTIVE:
                    continue
                if isinstance(value, dict | list):
                    fields.dropped.append(Reason.MALFORMED_FIELD)
                    continue
                number = _number(value)
                metric = device_metric(key)
                if object_key == "analog" and key == "a0":
                    metric = "soil_moisture"  # the soil probe on the ESP8266's only ADC
                elif object_key == "analog":
                    metric = f"analog_{key}"
                if not isinstance(number, str):
                    if metric == "air_temperature" and fahrenheit:
                        number = (number - 32.0) * 5.0 / 9.0
                    elif metric == "pressure":
                        number = MessageReason.UNKNOWN_UNIT if pressure_factor is None else number * pressure_factor
                if object_key in _CHIP_OBJECTS:
                    fields.add(f"{object_key}_{key}", number)  # esp32_temperature: the chip's, never the air's
                    continue
                fields.add(self._tasmota_name(device, metric, object_key, claimed), number, metric)
        return fields.result(device)

    def _tasmota_name(self, device: str, metric: str, object_key: str, claimed: set[str]) -> str:
        """The metric itself for the object that first reported it on this device, ``<metric>_<object>`` for others.

        Remembered per device, not decided per message: when the AM2301 fails a read (Tasmota then
        sends null or leaves it out) the DS18B20 beside it keeps its own name and never lands in
        the air temperature's series.
        """
        owner = self._owners.get((device, metric))
        if owner is None and metric not in claimed:
            if len(self._owners) >= self.MAX_OWNERS:
                self._owners.clear()
            owner = self._owners[(device, metric)] = object_key
        claimed.add(metric)
        return metric if owner == object_key else f"{metric}_{object_key}"

    # --- ESPHome -----------------------------------------------------------------------------
    def _esphome(self, device: str, levels: list[str], payload: bytes) -> Parsed:
        if len(levels) == 2:
            return _availability(device, payload)
        fields = _Fields()
        fields.add(device_metric(snake(levels[2])), _text_number(payload))
        return fields.result(device)

    # --- Shelly ------------------------------------------------------------------------------
    def _shelly_gen1(self, device: str, levels: list[str], payload: bytes) -> Parsed:
        if len(levels) == 3:
            return _availability(device, payload)
        kind = snake(levels[3])
        if kind in _SHELLY_GEN1_IGNORED:
            return None
        fields = _Fields()
        fields.add(device_metric(kind), _text_number(payload))
        return fields.result(device)

    def _shelly_gen2(self, device: str, levels: list[str], payload: bytes) -> Parsed:
        if len(levels) == 2:
            return _availability(device, payload)
        document = _json_object(payload)
        if isinstance(document, Rejected):
            return document
        if document.get("method") not in ("NotifyStatus", "NotifyFullStatus"):
            return None  # NotifyEvent and the like: no measurement
        params = document.get("params")
        if not isinstance(params, dict):
            return Rejected(MessageReason.MALFORMED_JSON, "params is not an object")
        # A NotifyStatus carries only what changed: each value it carries is one sample, and a
        # value it leaves out is not repeated from the last one (that would count it twice).
        fields = _Fields()
        for component, status in params.items():
            kind, _, index = component.partition(":")
            if not isinstance(status, dict):
                continue  # "ts"
            if index not in ("", "0") and not (
                index.isascii() and index.isdigit() and index[0] != "0" and len(index) <= 3
            ):
                fields.dropped.append(Reason.MALFORMED_FIELD)  # "temperature:00", "temperature:x"
                continue
            suffix = "" if index in ("", "0") else index
            if kind == "devicepower":
                battery, external = status.get("battery"), status.get("external")
                if isinstance(external, dict) and external.get("present") is True:
                    continue  # on USB power the battery reads 0 %: not a measurement
                if isinstance(battery, dict) and "percent" in battery:
                    fields.add(self._indexed("battery", suffix), _number(battery["percent"]), "battery")
                continue
            for field_name, metric in _SHELLY_COMPONENTS.get(kind, ()):
                if field_name in status:
                    fields.add(self._indexed(metric, suffix), _number(status[field_name]), metric)
        return fields.result(device)

    @staticmethod
    def _indexed(metric: str, suffix: str) -> str:
        """A Shelly's second probe of a kind (``temperature:1``) is ``air_temperature_1``."""
        return f"{metric}_{suffix}" if suffix else metric

    # --- the generic JSON form ---------------------------------------------------------------
    def _generic(self, device: str, levels: list[str], payload: bytes) -> Parsed:
        if levels[2] == "status":
            return _availability(device, payload)
        document = _json_object(payload)
        if isinstance(document, Rejected):
            return document
        fields = _Fields()
        for key, value in document.items():
            metric = _generic_metric(key)
            if metric is None:
                fields.dropped.append(Reason.INVALID_KEY)
                continue
            if isinstance(value, dict | list):
                fields.dropped.append(Reason.MALFORMED_FIELD)
                continue
            fields.add(metric, _number(value))
        if not fields.values and not fields.dropped:
            return Rejected(Reason.NO_VALUES)
        return fields.result(device)
