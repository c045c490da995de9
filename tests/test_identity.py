"""Sensor identity (sensors.identity): every usual spelling of a MAC is one sensor."""

from __future__ import annotations

import pytest

from sensors.identity import normalise_mac

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
