"""Framing (sensors.ingest.framing): a byte stream cut into lines whatever the recv boundaries.

Pure Python: no database, no Django.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.ingest.framing import MAX_LINE_BYTES, LineFramer
from sensors.ingest.protocol import Accepted, parse_line
from tests.test_protocol import FIRMWARE_LINE, firmware_lines


def feed(framer: LineFramer, data: bytes) -> tuple[list[bytes], bool]:
    """`feed_block` as a list of lines without their newlines (easier to compare)."""
    block, too_long = framer.feed_block(data)
    lines = block.split(b"\n")
    lines.pop()  # what follows the last newline: nothing
    return lines, too_long


# --- LineFramer -------------------------------------------------------------------------
def test_line_split_across_feeds_is_returned_once() -> None:
    framer = LineFramer()
    assert feed(framer, b"Soil: 612; te") == ([], False)
    assert feed(framer, b"mp: 21; from 5c:cf") == ([], False)
    assert feed(framer, b":7f:0a:1b:2c\n") == ([b"Soil: 612; temp: 21; from 5c:cf:7f:0a:1b:2c"], False)
    assert feed(framer, b"") == ([], False)
    assert framer.finish() is False


def test_byte_by_byte_feeding_returns_each_line_once() -> None:
    framer = LineFramer()
    stream = FIRMWARE_LINE + b"\r\n" + FIRMWARE_LINE + b"\n"
    lines: list[bytes] = []
    for byte in stream:
        got, too_long = feed(framer, bytes([byte]))
        assert too_long is False
        lines.extend(got)
    assert lines == [FIRMWARE_LINE + b"\r", FIRMWARE_LINE]
    assert framer.finish() is False


def test_many_lines_in_one_feed_are_all_returned_and_tail_is_kept() -> None:
    framer = LineFramer()
    assert feed(framer, b"a: 1\nb: 2\n\nc: 3\r\nd: ") == ([b"a: 1", b"b: 2", b"", b"c: 3\r"], False)
    assert feed(framer, b"4\n") == ([b"d: 4"], False)


def test_multibyte_character_split_across_feeds_is_reassembled() -> None:
    framer = LineFramer()
    encoded = "température: 21\n".encode()
    cut = encoded.index(b"\xc3") + 1  # inside the two-byte "é"
    assert feed(framer, encoded[:cut]) == ([], False)
    assert feed(framer, encoded[cut:]) == ([encoded[:-1]], False)


def test_line_of_exactly_max_line_bytes_is_accepted() -> None:
    framer = LineFramer()
    line = b"x" * MAX_LINE_BYTES
    assert feed(framer, line + b"\n") == ([line], False)


def test_partial_line_of_exactly_max_line_bytes_is_kept_until_its_newline() -> None:
    framer = LineFramer()
    line = b"x" * MAX_LINE_BYTES
    assert feed(framer, line) == ([], False)
    assert feed(framer, b"\n") == ([line], False)


def test_line_over_max_line_bytes_is_too_long_and_earlier_lines_are_kept() -> None:
    framer = LineFramer()
    data = b"ok: 1\nok: 2\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nafter: 3\ntail"
    assert feed(framer, data) == ([b"ok: 1", b"ok: 2"], True)
    assert framer.finish() is False  # nothing after the flood is kept


def test_partial_line_over_max_line_bytes_without_newline_is_too_long() -> None:
    framer = LineFramer()
    assert feed(framer, b"ok: 1\n" + b"x" * (MAX_LINE_BYTES + 1)) == ([b"ok: 1"], True)
    assert framer.finish() is False


def test_partial_line_growing_over_the_limit_across_feeds_is_too_long() -> None:
    framer = LineFramer()
    assert feed(framer, b"x" * (MAX_LINE_BYTES - 1)) == ([], False)
    assert feed(framer, b"yy") == ([], True)


def test_custom_max_line_bytes_is_honoured() -> None:
    framer = LineFramer(max_line_bytes=4)
    assert feed(framer, b"abcd\nabcde\n") == ([b"abcd"], True)


@pytest.mark.parametrize(
    ("fed", "incomplete"),
    [
        pytest.param(b"", False, id="nothing-fed"),
        pytest.param(b"a: 1\n", False, id="only-complete-lines"),
        pytest.param(b"a: 1\nSoil: 6", True, id="non-blank-partial"),
        pytest.param(b"a: 1\n \t\r", False, id="blank-partial"),
    ],
)
def test_finish_is_true_only_when_a_non_blank_partial_remains(fed: bytes, incomplete: bool) -> None:
    framer = LineFramer()
    feed(framer, fed)
    assert framer.finish() is incomplete


def test_finish_forgets_the_partial_line() -> None:
    framer = LineFramer()
    feed(framer, b"Soil: 6")
    assert framer.finish() is True
    assert framer.finish() is False
    assert feed(framer, b"12\n") == ([b"12"], False)


@given(lines=st.lists(firmware_lines(), max_size=20), data=st.data())
def test_any_split_of_the_stream_yields_exactly_the_original_lines(
    lines: list[tuple[bytes, Accepted]], data: st.DataObject
) -> None:
    blob = b"".join(line + b"\n" for line, _ in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(blob)), max_size=50), label="cuts"))
    bounds = [0, *cuts, len(blob)]
    chunks = [blob[start:end] for start, end in itertools.pairwise(bounds)]

    framer = LineFramer()
    out: list[bytes] = []
    for chunk in chunks:
        got, too_long = feed(framer, chunk)
        assert too_long is False
        out.extend(got)

    assert out == [line for line, _ in lines]
    assert framer.finish() is False
    assert [parse_line(line) for line in out] == [accepted for _, accepted in lines]
