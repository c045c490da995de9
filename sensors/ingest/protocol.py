"""The sensor wire protocol (see docs/protocol.md): one line -> samples.

Plain Python with no Django import, so it can be property-tested and benchmarked
on its own. `parse_line` turns one line (cut from the byte stream by
`sensors.ingest.framing`) into an `Accepted` (a sensor identity plus metric values,
with any dropped fields listed) or a `Rejected` with a reason. Which keys name which
metric, and the values each may take, come from the metric registry (sensors.metrics).

Policy for a line with a valid identity and a bad field (the protocol leaves it
to us): the good fields are kept and each bad field is counted as a rejected
field. A line whose fields are all bad is a rejected line, with the first bad
field's reason. A line without a valid identity is always rejected whole.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from sensors.identity import normalise_mac
from sensors.metrics import FIRMWARE_LINE, bounds, canonical

MAX_FIELDS_PER_LINE = 32
MAX_KEY_LENGTH = 32


class Reason:
    """Why a line, a field or a connection was refused; used as counter keys."""

    # whole lines
    INVALID_ENCODING = "invalid_encoding"
    MISSING_IDENTITY = "missing_identity"
    INVALID_MAC = "invalid_mac"
    CONFLICTING_IDENTITY = "conflicting_identity"
    TOO_MANY_FIELDS = "too_many_fields"
    NO_VALUES = "no_values"
    # single fields (or the whole line when every field is bad)
    MALFORMED_FIELD = "malformed_field"
    INVALID_KEY = "invalid_key"
    DUPLICATE_FIELD = "duplicate_field"
    NOT_A_NUMBER = "not_a_number"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    TOO_MANY_METRICS = "too_many_metrics"
    # policy (counted by the collector)
    UNKNOWN_SENSOR = "unknown_sensor"
    TOO_MANY_NEW_SENSORS = "too_many_new_sensors"  # COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE
    TOO_MANY_SENSORS = "too_many_sensors"  # COLLECTOR_MAX_SENSORS
    # framing (counted by the listener)
    LINE_TOO_LONG = "line_too_long"
    INCOMPLETE_LINE = "incomplete_line"


_KEY_RE = re.compile(r"[a-z][a-z0-9_]*\Z", re.ASCII)
# Plain decimal numbers only: no "1_000", "0x10", "nan" or "inf" (float() takes those).
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
_NON_FINITE = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


@dataclass(frozen=True, slots=True)
class Accepted:
    """A line with a valid identity and at least one good value."""

    mac: str
    values: tuple[tuple[str, float], ...]
    dropped: tuple[str, ...] = field(default=())  # reasons of fields left out


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str = ""


def parse_number(text: str) -> float | str:
    """A plain decimal number as a finite float, or the reason it is refused (also MQTT's text payloads)."""
    if not _NUMBER_RE.match(text):
        return Reason.NOT_FINITE if text.lower() in _NON_FINITE else Reason.NOT_A_NUMBER
    value = float(text)
    if not math.isfinite(value):  # 1e999
        return Reason.NOT_FINITE
    return value


def _parse_value(metric: str, text: str) -> float | str:
    """Return the value, or the reason it is refused."""
    value = parse_number(text)
    if isinstance(value, str):
        return value
    low, high = bounds(metric)
    if not low <= value <= high:
        return Reason.OUT_OF_RANGE
    return value


def _split_identity(item: str) -> str | None:
    """Return the MAC text of a ``from MAC`` / ``from: MAC`` field, else None."""
    if len(item) > 4 and item[:4].lower() == "from" and item[4] in " \t:":
        return item[5:].strip() if item[4] == ":" else item[4:].lstrip(" \t:")
    return None


# --- the fast path: the firmware's own line --------------------------------------------
# `Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c` exactly as the firmware writes it
# (DHT22 decimals and a `\r` before the `\n` included). It matches only lines the full parser
# accepts whole with these three values in this order and nothing dropped, once the two range
# checks below pass; any other line, however slightly different, goes to the full parser.
# Soil has no sign and at most 9 integer digits, so 0 <= soil < 1e9 holds by construction;
# humidity has no sign (>= 0); temperature and the humidity ceiling are checked on the floats.
# `tests/test_protocol.py` proves the fast path and the full parser agree (hypothesis).
_CANONICAL = (
    r"Soil: (\d{1,9}(?:\.\d{1,6})?); temp: (-?\d{1,3}(?:\.\d{1,6})?); hum: (\d{1,3}(?:\.\d{1,6})?); "
    r"from ([0-9a-f]{2}(?::[0-9a-f]{2}){5})\r?"
)
_CANONICAL_LINE = re.compile((_CANONICAL + r"\Z").encode("ascii"))
# The same pattern over a block of complete lines (decoded as ASCII): one match per firmware line.
_CANONICAL_BLOCK = re.compile(r"^" + _CANONICAL + r"$", re.MULTILINE | re.ASCII)
TEMPERATURE_LOW, TEMPERATURE_HIGH = bounds("air_temperature")
HUMIDITY_HIGH = bounds("humidity")[1]


def parse_firmware_line(raw: bytes) -> tuple[str, float, float, float] | None:
    """The firmware line's fast path: (MAC, soil, temperature, humidity), or None when the full parser must decide."""
    match = _CANONICAL_LINE.match(raw)
    if match is None:
        return None
    soil, temp, hum, mac = match.groups()
    temperature, humidity = float(temp), float(hum)
    if not (TEMPERATURE_LOW <= temperature <= TEMPERATURE_HIGH and humidity <= HUMIDITY_HIGH):
        return None
    return mac.decode("ascii"), float(soil), temperature, humidity


def parse_canonical(raw: bytes) -> Accepted | None:
    """`parse_firmware_line` as the `Accepted` the full parser would return."""
    fields = parse_firmware_line(raw)
    if fields is None:
        return None
    mac, soil, temperature, humidity = fields
    return Accepted(mac, tuple(zip(FIRMWARE_LINE, (soil, temperature, humidity), strict=True)))


def parse_firmware_block(block: bytes) -> tuple[tuple[str, ...], list[float], list[float], list[float]] | None:
    """The fast path for a block of complete lines (each ending in ``\\n``), all firmware lines.

    Returns the columns (MACs, soil, temperature, humidity values, in line order), exactly what
    `parse_line` would accept from each line, or None when any line is not a firmware line or
    out of range: the caller then parses the block line by line.
    """
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        return None
    rows = _CANONICAL_BLOCK.findall(text)
    if not rows or len(rows) != text.count("\n"):
        return None
    soil_texts, temp_texts, hum_texts, macs = zip(*rows, strict=True)
    temps = list(map(float, temp_texts))
    hums = list(map(float, hum_texts))
    if min(temps) < TEMPERATURE_LOW or max(temps) > TEMPERATURE_HIGH or max(hums) > HUMIDITY_HIGH:
        return None
    return macs, list(map(float, soil_texts)), temps, hums


def parse_line(raw: bytes) -> Accepted | Rejected | None:
    """Parse one line (without its ``\\n``). None means an empty line, ignored silently."""
    return parse_canonical(raw) or parse_line_full(raw)


def parse_line_full(raw: bytes) -> Accepted | Rejected | None:
    """The tolerant parser for any line (`parse_line` tries the firmware's exact line first)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(Reason.INVALID_ENCODING)
    text = text.strip()
    if not text:
        return None
    items = text.split(";")
    if len(items) > MAX_FIELDS_PER_LINE:
        return Rejected(Reason.TOO_MANY_FIELDS, f"{len(items)} fields")

    mac: str | None = None
    values: dict[str, float] = {}
    dropped: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue  # a trailing or doubled ";"
        mac_text = _split_identity(item)
        if mac_text is not None:
            if mac is not None:
                return Rejected(Reason.CONFLICTING_IDENTITY, item)
            mac = normalise_mac(mac_text)
            if mac is None:
                return Rejected(Reason.INVALID_MAC, mac_text)
            continue
        key, sep, value_text = item.partition(":")
        if not sep:
            dropped.append(Reason.MALFORMED_FIELD)
            continue
        key = key.strip()
        if len(key) > MAX_KEY_LENGTH or not key.isascii() or not _KEY_RE.match(key := key.lower()):
            dropped.append(Reason.INVALID_KEY)
            continue
        metric = canonical(key)
        if metric in values:
            dropped.append(Reason.DUPLICATE_FIELD)
            continue
        value = _parse_value(metric, value_text.strip())
        if isinstance(value, str):
            dropped.append(value)
            continue
        values[metric] = value

    if mac is None:
        return Rejected(Reason.MISSING_IDENTITY)
    if not values:
        return Rejected(dropped[0] if dropped else Reason.NO_VALUES)
    return Accepted(mac, tuple(values.items()), tuple(dropped))
