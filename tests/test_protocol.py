"""The wire protocol (docs/protocol.md): parse_line, its fast paths, and the metric bounds it applies.

Pure Python: no database, no Django.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.identity import normalise_mac
from sensors.ingest.protocol import (
    MAX_FIELDS_PER_LINE,
    MAX_KEY_LENGTH,
    Accepted,
    Reason,
    Rejected,
    parse_line,
)
from sensors.metrics import bounds

MAC = "5c:cf:7f:0a:1b:2c"
FIRMWARE_LINE = b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c"
FIRMWARE_VALUES = (("soil_moisture", 612.0), ("air_temperature", 21.0), ("humidity", 48.0))


# --- parse_line: good lines -------------------------------------------------------------
GOOD_LINES = [
    pytest.param(FIRMWARE_LINE, Accepted(MAC, FIRMWARE_VALUES), id="exact-firmware-line"),
    pytest.param(FIRMWARE_LINE + b"\r", Accepted(MAC, FIRMWARE_VALUES), id="crlf-ending-leaves-cr"),
    pytest.param(
        b"  Soil :  612 ;temp:21 ;   hum   :  48;   from    5c:cf:7f:0a:1b:2c  ",
        Accepted(MAC, FIRMWARE_VALUES),
        id="extra-spaces-around-separators",
    ),
    pytest.param(
        b"Soil:\t612;\ttemp :\t21 ; hum: 48; from\t5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="tabs-around-separators",
    ),
    pytest.param(
        b"SOIL: 612; Temp: 21; hUm: 48; FROM 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="keys-in-any-letter-case",
    ),
    pytest.param(
        b"from 5c:cf:7f:0a:1b:2c; hum: 48; Soil: 612; temp: 21",
        Accepted(MAC, (("humidity", 48.0), ("soil_moisture", 612.0), ("air_temperature", 21.0))),
        id="fields-in-any-order-keep-line-order",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from: 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="from-with-colon",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from : 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="from-space-colon",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from 5C:CF:7F:0A:1B:2C",
        Accepted(MAC, FIRMWARE_VALUES),
        id="mac-upper-case",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from 5c-cf-7f-0a-1b-2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="mac-dash-separators",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from 5ccf7f0a1b2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="mac-12-bare-hex-digits",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; from 5CCF7F0A1B2C",
        Accepted(MAC, FIRMWARE_VALUES),
        id="mac-12-bare-upper-hex-digits",
    ),
    pytest.param(
        b"Soil: 612.5; temp: 21.4; hum: 48.7; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("soil_moisture", 612.5), ("air_temperature", 21.4), ("humidity", 48.7))),
        id="decimal-values-dht22",
    ),
    pytest.param(
        b"temp: -3.5; hum: .5; Soil: 7.; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("air_temperature", -3.5), ("humidity", 0.5), ("soil_moisture", 7.0))),
        id="negative-and-dot-edge-decimals",
    ),
    pytest.param(
        b"Soil: 612; temp: 21; hum: 48; light: 340; co2: 415; battery: 3.71; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (*FIRMWARE_VALUES, ("light", 340.0), ("co2", 415.0), ("battery", 3.71))),
        id="extra-metrics-light-co2-battery",
    ),
    pytest.param(
        b"Light: 340; CO2: 415; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("light", 340.0), ("co2", 415.0))),
        id="extra-metric-keys-are-lowercased",
    ),
    pytest.param(
        FIRMWARE_LINE + b";",
        Accepted(MAC, FIRMWARE_VALUES),
        id="trailing-semicolon",
    ),
    pytest.param(
        b"Soil: 612;; temp: 21; ;hum: 48; from 5c:cf:7f:0a:1b:2c ; ",
        Accepted(MAC, FIRMWARE_VALUES),
        id="doubled-and-trailing-semicolons-with-spaces",
    ),
    pytest.param(
        b"soil_moisture: 612; temperature: 21; humidity: 48; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="long-key-aliases",
    ),
    pytest.param(
        b"air_temperature: 21; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("air_temperature", 21.0),)),
        id="canonical-key-name",
    ),
    pytest.param(
        b"Soil: 0; temp: -60; hum: 0; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("soil_moisture", 0.0), ("air_temperature", -60.0), ("humidity", 0.0))),
        id="lower-bounds-are-inclusive",
    ),
    pytest.param(
        b"Soil: 1024; temp: 100; hum: 100; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, (("soil_moisture", 1024.0), ("air_temperature", 100.0), ("humidity", 100.0))),
        id="upper-bounds-are-inclusive",
    ),
    pytest.param(
        b"Soil: +612; temp: 2.1e1; hum: 4.8E+1; from 5c:cf:7f:0a:1b:2c",
        Accepted(MAC, FIRMWARE_VALUES),
        id="plus-sign-and-exponent",
    ),
    pytest.param(
        b" fRoM: 5C-cf-7F-0a-1B-2c ;HUM :48.0 ; light:340;Soil:612 ;\r",
        Accepted(MAC, (("humidity", 48.0), ("light", 340.0), ("soil_moisture", 612.0))),
        id="all-variations-together",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_LINES)
def test_parse_line_accepts_firmware_line_and_tolerated_variations(raw: bytes, expected: Accepted) -> None:
    assert parse_line(raw) == expected


# --- parse_line: bad lines --------------------------------------------------------------
TOO_MANY_FIELDS_LINE = "; ".join([f"m{i}: 1" for i in range(MAX_FIELDS_PER_LINE)] + [f"from {MAC}"]).encode()

BAD_LINES = [
    pytest.param(b"Soil: 612; temp: 21; hum: 48", Reason.MISSING_IDENTITY, id="no-from"),
    pytest.param(b"Soil: 612; temp: 21; hum: 48; 5c:cf:7f:0a:1b:2c", Reason.MISSING_IDENTITY, id="mac-without-from"),
    pytest.param(b"Soil: 612; from kitchen", Reason.INVALID_MAC, id="from-not-a-mac"),
    pytest.param(b"Soil: 612; from 5c:cf:7f:0a:1b", Reason.INVALID_MAC, id="from-short-mac"),
    pytest.param(b"Soil: 612; from:", Reason.INVALID_MAC, id="from-colon-empty"),
    pytest.param(
        b"Soil: 612; from 5c:cf:7f:0a:1b:2c; from 5c:cf:7f:0a:1b:2d",
        Reason.CONFLICTING_IDENTITY,
        id="two-from-fields-different",
    ),
    pytest.param(
        b"from 5c:cf:7f:0a:1b:2c; Soil: 612; from 5c:cf:7f:0a:1b:2c",
        Reason.CONFLICTING_IDENTITY,
        id="two-from-fields-same",
    ),
    pytest.param(b"temp: nan; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="nan"),
    pytest.param(b"temp: NaN; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="nan-mixed-case"),
    pytest.param(b"temp: inf; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="inf"),
    pytest.param(b"temp: -inf; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="minus-inf"),
    pytest.param(b"light: Infinity; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="infinity-extra-metric"),
    pytest.param(b"light: 1e999; from 5c:cf:7f:0a:1b:2c", Reason.NOT_FINITE, id="1e999-overflows"),
    pytest.param(b"temp: abc; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="abc"),
    pytest.param(b"temp: ; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="empty-value"),
    pytest.param(b"temp:; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="empty-value-no-space"),
    pytest.param(b"light: 0x10; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="hex-number"),
    pytest.param(b"light: 1_000; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="underscore-number"),
    pytest.param(b"temp: 21 C; from 5c:cf:7f:0a:1b:2c", Reason.NOT_A_NUMBER, id="number-with-unit"),
    pytest.param(b"hum: 101; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="humidity-101"),
    pytest.param(b"hum: -1; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="humidity-minus-1"),
    pytest.param(b"hum: 100.1; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="humidity-100.1"),
    pytest.param(b"temp: -61; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="temp-minus-61"),
    pytest.param(b"temp: -60.1; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="temp-minus-60.1"),
    pytest.param(b"temp: 101; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="temp-101"),
    pytest.param(b"Soil: -1; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="negative-soil"),
    pytest.param(b"Soil: -0.5; from 5c:cf:7f:0a:1b:2c", Reason.OUT_OF_RANGE, id="negative-decimal-soil"),
    pytest.param(b"\xff\xfeSoil: 612; from 5c:cf:7f:0a:1b:2c", Reason.INVALID_ENCODING, id="invalid-utf8-ff"),
    pytest.param(b"Soil: 612\xc3; from 5c:cf:7f:0a:1b:2c", Reason.INVALID_ENCODING, id="truncated-utf8-sequence"),
    pytest.param(b"\xff", Reason.INVALID_ENCODING, id="lone-ff-byte"),
    pytest.param(
        b"'; DROP TABLE x; --: 1; from 5c:cf:7f:0a:1b:2c",
        Reason.MALFORMED_FIELD,  # split at ";": "'" has no ":" and is the first bad field
        id="sql-injection-split-into-bad-fields",
    ),
    pytest.param(
        b"x' OR '1'='1: 5; from 5c:cf:7f:0a:1b:2c",
        Reason.INVALID_KEY,
        id="sql-looking-key",
    ),
    pytest.param(b"--: 1; from 5c:cf:7f:0a:1b:2c", Reason.INVALID_KEY, id="key-not-an-identifier"),
    pytest.param(b"1abc: 1; from 5c:cf:7f:0a:1b:2c", Reason.INVALID_KEY, id="key-starting-with-digit"),
    pytest.param(
        b"a" * (MAX_KEY_LENGTH + 1) + b": 1; from 5c:cf:7f:0a:1b:2c",
        Reason.INVALID_KEY,
        id="key-longer-than-max",
    ),
    pytest.param(b"Soil 612; from 5c:cf:7f:0a:1b:2c", Reason.MALFORMED_FIELD, id="field-without-colon"),
    pytest.param(TOO_MANY_FIELDS_LINE, Reason.TOO_MANY_FIELDS, id="more-than-max-fields"),
    pytest.param(b"from 5c:cf:7f:0a:1b:2c", Reason.NO_VALUES, id="identity-only"),
    pytest.param(b"from 5c:cf:7f:0a:1b:2c;;", Reason.NO_VALUES, id="identity-and-empty-fields"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_LINES)
def test_parse_line_rejects_bad_line_with_exact_reason(raw: bytes, reason: str) -> None:
    result = parse_line(raw)
    assert isinstance(result, Rejected)
    assert result.reason == reason


def test_too_many_fields_fixture_really_exceeds_the_limit() -> None:
    assert TOO_MANY_FIELDS_LINE.count(b";") + 1 == MAX_FIELDS_PER_LINE + 1


def test_line_with_exactly_max_fields_is_accepted() -> None:
    fields = [f"m{i}: {i}" for i in range(MAX_FIELDS_PER_LINE - 1)] + [f"from {MAC}"]
    result = parse_line("; ".join(fields).encode())
    assert result == Accepted(MAC, tuple((f"m{i}", float(i)) for i in range(MAX_FIELDS_PER_LINE - 1)))


def test_key_of_exactly_max_length_is_accepted() -> None:
    key = "k" * MAX_KEY_LENGTH
    assert parse_line(f"{key}: 1; from {MAC}".encode()) == Accepted(MAC, ((key, 1.0),))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" ", id="space"),
        pytest.param(b"\r", id="cr-only"),
        pytest.param(b" \t \r", id="mixed-whitespace"),
    ],
)
def test_empty_or_whitespace_line_is_ignored(raw: bytes) -> None:
    assert parse_line(raw) is None


# --- parse_line: the partial-field policy -----------------------------------------------
def test_one_bad_field_keeps_good_fields_and_lists_reason_in_dropped() -> None:
    result = parse_line(b"Soil: 612; temp: nan; hum: 48; from 5c:cf:7f:0a:1b:2c")
    assert result == Accepted(MAC, (("soil_moisture", 612.0), ("humidity", 48.0)), (Reason.NOT_FINITE,))


def test_each_bad_field_is_listed_in_dropped_in_line_order() -> None:
    result = parse_line(b"Soil: -1; temp: abc; hum: 48; light; --: 3; co2: 1e999; from 5c:cf:7f:0a:1b:2c")
    assert result == Accepted(
        MAC,
        (("humidity", 48.0),),
        (
            Reason.OUT_OF_RANGE,
            Reason.NOT_A_NUMBER,
            Reason.MALFORMED_FIELD,
            Reason.INVALID_KEY,
            Reason.NOT_FINITE,
        ),
    )


def test_duplicate_metric_keeps_first_value_and_drops_the_repeat() -> None:
    result = parse_line(b"temp: 21; hum: 48; temperature: 22; TEMP: 23; from 5c:cf:7f:0a:1b:2c")
    assert result == Accepted(
        MAC,
        (("air_temperature", 21.0), ("humidity", 48.0)),
        (Reason.DUPLICATE_FIELD, Reason.DUPLICATE_FIELD),
    )


def test_line_whose_every_field_is_bad_is_rejected_with_first_bad_reason() -> None:
    result = parse_line(b"Soil: -1; temp: abc; hum: 101; from 5c:cf:7f:0a:1b:2c")
    assert isinstance(result, Rejected)
    assert result.reason == Reason.OUT_OF_RANGE


def test_line_whose_every_field_is_bad_reports_first_reason_in_line_order() -> None:
    result = parse_line(b"from 5c:cf:7f:0a:1b:2c; temp: abc; Soil: -1")
    assert isinstance(result, Rejected)
    assert result.reason == Reason.NOT_A_NUMBER


def test_good_fields_without_identity_reject_the_whole_line() -> None:
    result = parse_line(b"Soil: 612; temp: 21; hum: 48; temp: nan")
    assert isinstance(result, Rejected)
    assert result.reason == Reason.MISSING_IDENTITY


def test_good_fields_with_invalid_identity_reject_the_whole_line() -> None:
    result = parse_line(b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b")
    assert isinstance(result, Rejected)
    assert result.reason == Reason.INVALID_MAC


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u0666\u0661\u0662", id="arabic-indic-612"),
        pytest.param("\uff16\uff11\uff12", id="fullwidth-612"),
    ],
)
def test_non_ascii_digits_are_not_a_number(value: str) -> None:
    result = parse_line(f"Soil: {value}; from {MAC}".encode())
    assert isinstance(result, Rejected)
    assert result.reason == Reason.NOT_A_NUMBER


# --- Hypothesis properties --------------------------------------------------------------
def _one_decimal(tenths: int) -> str:
    return f"{tenths / 10:.1f}"


macs = st.binary(min_size=6, max_size=6).map(lambda raw: ":".join(f"{byte:02x}" for byte in raw))
soil_texts = st.one_of(st.integers(0, 1024).map(str), st.integers(0, 10240).map(_one_decimal))
temp_texts = st.one_of(st.integers(-60, 100).map(str), st.integers(-600, 1000).map(_one_decimal))
hum_texts = st.one_of(st.integers(0, 100).map(str), st.integers(0, 1000).map(_one_decimal))


@st.composite
def firmware_lines(draw: st.DrawFn) -> tuple[bytes, Accepted]:
    """A line as the firmware writes it (integers from a DHT11, one decimal from a DHT22)."""
    mac = draw(macs)
    soil, temp, hum = draw(soil_texts), draw(temp_texts), draw(hum_texts)
    line = f"Soil: {soil}; temp: {temp}; hum: {hum}; from {mac}".encode()
    values = (("soil_moisture", float(soil)), ("air_temperature", float(temp)), ("humidity", float(hum)))
    return line, Accepted(mac, values)


@given(st.binary(max_size=2000))
def test_parse_line_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = parse_line(raw)
    assert result is None or isinstance(result, Accepted | Rejected)


keys = st.one_of(
    st.sampled_from(["Soil", "soil", "temp", "TEMP", "temperature", "hum", "humidity", "light", "co2", "battery"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-' ", max_size=40),
)
value_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["", "nan", "-inf", "Infinity", "1e999", "-1e999", "abc", ".", "-", "1e", "1.5e-3", "0x10"]),
)
fields = st.one_of(
    st.tuples(keys, value_texts).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.text(max_size=20),
)


@st.composite
def protocol_like_lines(draw: st.DrawFn) -> bytes:
    """Lines close to the protocol, so that a good share of them are accepted."""
    parts = draw(st.lists(fields, max_size=12))
    identities = draw(st.sampled_from([0, 1, 1, 1, 1, 2]))
    for _ in range(identities):
        parts.insert(draw(st.integers(0, len(parts))), f"from {draw(macs)}")
    separator = draw(st.sampled_from([";", "; ", " ; "]))
    return separator.join(parts).encode()


@given(protocol_like_lines())
def test_parse_line_never_raises_on_protocol_like_lines(raw: bytes) -> None:
    result = parse_line(raw)
    assert result is None or isinstance(result, Accepted | Rejected)


@given(st.one_of(protocol_like_lines(), firmware_lines().map(lambda pair: pair[0])))
def test_accepted_values_are_finite_and_within_metric_bounds(raw: bytes) -> None:
    result = parse_line(raw)
    if not isinstance(result, Accepted):
        return
    assert normalise_mac(result.mac) == result.mac
    assert result.values, "an accepted line has at least one value"
    metrics = [metric for metric, _ in result.values]
    assert len(metrics) == len(set(metrics))
    for metric, value in result.values:
        assert isinstance(value, float)
        assert math.isfinite(value)
        low, high = bounds(metric)
        assert low <= value <= high, (metric, value)


def test_non_ascii_key_that_lowercases_to_ascii_is_an_invalid_key():
    result = parse_line("\u212aey: 1; soil: 5; from 5c:cf:7f:0a:1b:2c".encode())  # KELVIN SIGN K
    assert result == Accepted("5c:cf:7f:0a:1b:2c", (("soil_moisture", 5.0),), (Reason.INVALID_KEY,))


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1000000001"])
def test_extra_metric_beyond_a_billion_is_out_of_range_so_sums_stay_finite(value):
    result = parse_line(f"co2: {value}; soil: 5; from 5c:cf:7f:0a:1b:2c".encode())
    assert result == Accepted("5c:cf:7f:0a:1b:2c", (("soil_moisture", 5.0),), (Reason.OUT_OF_RANGE,))
