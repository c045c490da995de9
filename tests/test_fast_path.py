"""The ingest fast path agrees exactly with the full parser and the line-by-line path (hypothesis).

The firmware line `Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c` has a fast path at three
levels: `parse_canonical` (one line), `parse_firmware_block` (a read's block of lines, aggregated
column-wise by `Aggregator.add_firmware_lines`) and `LineFramer.feed_block`. Each must give
exactly what the tolerant path gives, on arbitrary and on near-firmware input.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sensors.ingest.collector import Collector, CollectorConfig
from sensors.ingest.framing import LineFramer
from sensors.ingest.protocol import (
    parse_canonical,
    parse_firmware_block,
    parse_line,
    parse_line_full,
)

NUMBERS = st.one_of(
    st.integers(-2_000_000_000, 2_000_000_000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(0, 8).flatmap(lambda p: st.decimals(min_value=-200, max_value=2000, places=p)).map(str),
    st.sampled_from(["", "nan", "inf", "1e3", "+5", "007", "1.", ".5", "-0", "100.0", "100.01", "-60", "-60.5"]),
    st.sampled_from(["999999999", "1000000000", "999999999.999999", "1234567890", "\u0663", "1_0", "0x1"]),
)
MACS = st.one_of(
    st.sampled_from(["5c:cf:7f:0a:1b:2c", "5C:CF:7F:0A:1B:2C", "5c-cf-7f-0a-1b-2c", "5ccf7f0a1b2c", "5c:cf:7f:0a:1b"]),
    st.lists(st.sampled_from("0123456789abcdefABCDEF:-g "), min_size=10, max_size=19).map("".join),
)
SEPARATORS = st.sampled_from(["; ", ";", " ; ", ";  ", "; "])
KEYS = st.tuples(
    st.sampled_from(["Soil", "soil", "SOIL", "soil_moisture", "Soil ", "Soi"]),
    st.sampled_from(["temp", "Temp", "temperature", "tmp"]),
    st.sampled_from(["hum", "HUM", "humidity", "hum "]),
    st.sampled_from(["from ", "from: ", "from  ", "From ", "from\t"]),
)
ENDINGS = st.sampled_from(["", "\r", "\r\r", " ", "\t", ";", "; light: 3", "\x0c", "\u00a0"])


@st.composite
def near_firmware_lines(draw) -> bytes:
    soil_key, temp_key, hum_key, from_key = draw(KEYS)
    sep = draw(SEPARATORS)
    text = (
        f"{draw(st.sampled_from(['', ' ']))}{soil_key}: {draw(NUMBERS)}{sep}{temp_key}: {draw(NUMBERS)}{sep}"
        f"{hum_key}: {draw(NUMBERS)}{sep}{from_key}{draw(MACS)}{draw(ENDINGS)}"
    )
    return text.encode("utf-8")


@st.composite
def firmware_lines(draw) -> bytes:
    """Lines as boards really send them (DHT11 integers, DHT22 one decimal), some out of range."""
    temp = draw(st.one_of(st.integers(-70, 110).map(str), st.floats(-70, 110).map(lambda v: f"{v:.1f}")))
    hum = draw(st.one_of(st.integers(0, 110).map(str), st.floats(0, 110).map(lambda v: f"{v:.1f}")))
    mac = draw(st.sampled_from(["5c:cf:7f:0a:1b:2c", "5c:cf:7f:00:00:01", "5c:cf:7f:00:00:02"]))
    return f"Soil: {draw(st.integers(0, 1024))}; temp: {temp}; hum: {hum}; from {mac}".encode()


ANY_LINE = st.one_of(near_firmware_lines(), firmware_lines(), st.binary(max_size=80))


@settings(max_examples=3000, deadline=None)
@given(raw=ANY_LINE)
@example(raw=b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c")
@example(raw=b"Soil: 612; temp: -0; hum: 100.0; from 5c:cf:7f:0a:1b:2c\r")
@example(raw=b"Soil: 999999999.999999; temp: -60; hum: 0; from 5c:cf:7f:0a:1b:2c")
def test_fast_path_accepts_only_what_the_full_parser_accepts_with_the_same_values(raw: bytes) -> None:
    full = parse_line_full(raw)
    fast = parse_canonical(raw)
    assert fast is None or fast == full
    assert parse_line(raw) == full


@given(raw=firmware_lines())
def test_in_range_firmware_lines_take_the_fast_path(raw: bytes) -> None:
    full = parse_line_full(raw)
    if full is not None and not getattr(full, "dropped", True):
        assert parse_canonical(raw) == full


@settings(max_examples=1000, deadline=None)
@given(lines=st.lists(ANY_LINE.filter(lambda b: b"\n" not in b), max_size=12))
def test_block_fast_path_gives_per_line_results_or_declines(lines: list[bytes]) -> None:
    block = b"".join(line + b"\n" for line in lines)
    columns = parse_firmware_block(block)
    if columns is None:
        return
    parsed = [parse_line_full(line) for line in lines]
    macs, soils, temps, hums = columns
    assert [(p.mac, p.values, p.dropped) for p in parsed] == [
        (mac, (("soil_moisture", s), ("air_temperature", t), ("humidity", h)), ())
        for mac, s, t, h in zip(macs, soils, temps, hums, strict=True)
    ]


# --- the collector: block path == line-by-line path --------------------------------------
class NullWriter:
    pending_buckets = 0
    rows_written = 0
    dropped_samples = 0

    def submit(self, batch) -> None:
        pass


def outcome(collector: Collector) -> tuple:
    batch = collector.aggregator.drain()
    buckets = {key: (b.count, b.total, b.low, b.high) for key, b in batch.buckets.items()}
    sensors = {mac: (s.first_seen, s.last_seen, s.peer) for mac, s in batch.sensors.items()}
    return (
        buckets,
        sensors,
        collector.lines,
        collector.samples,
        Counter(collector.rejected_lines),
        Counter(collector.rejected_fields),
    )


STREAM = st.lists(
    st.tuples(
        st.lists(st.one_of(firmware_lines(), firmware_lines(), ANY_LINE).filter(lambda b: b"\n" not in b), max_size=8),
        st.integers(0, 130),  # seconds into the run: the reads span minute boundaries
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    ),
    max_size=10,
)


@settings(max_examples=400, deadline=None)
@given(reads=STREAM, limit=st.sampled_from([16, 3, 2]))
def test_collector_block_path_equals_the_line_by_line_path(reads, limit) -> None:
    by_block = Collector(CollectorConfig(max_metrics_per_sensor=limit), NullWriter())  # type: ignore[arg-type]
    by_line = Collector(CollectorConfig(max_metrics_per_sensor=limit), NullWriter())  # type: ignore[arg-type]
    for lines, second, peer in sorted(reads, key=lambda read: read[1]):
        block = b"".join(line + b"\n" for line in lines)
        timestamp = 1_764_000_000.0 + second
        if block:
            by_block.handle_block(peer, block, timestamp)
        by_line.handle_lines(peer, list(lines), timestamp)
    assert outcome(by_block) == outcome(by_line)


# --- framing: feed_block == a plain model of the protocol's framing, whatever the recv boundaries ----
def framed_by_the_book(chunks: list[bytes], limit: int) -> tuple[list[bytes], bool, bool]:
    """The framing rules read straight off docs/protocol.md: (lines, too long?, incomplete tail?)."""
    buffer, lines = b"", []
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if len(line) > limit:
                return lines, True, False
            lines.append(line)
        if len(buffer) > limit:
            return lines, True, False
    return lines, False, bool(buffer.strip())


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(st.sampled_from([0, 1, 5, 60, 511, 512, 513, 1023, 1024, 1025, 1026, 3000]), st.booleans()),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    limit=st.sampled_from([1024, 100, 10, 1]),
)
def test_feed_block_gives_exactly_the_lines_and_outcome_of_the_framing_rules(pieces, cuts, limit) -> None:
    stream = b"".join(b"a" * size + (b"\n" if newline else b"") for size, newline in pieces)
    positions = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *positions], [*positions, len(stream)], strict=True)]
    framer = LineFramer(limit)
    lines: list[bytes] = []
    too_long = False
    for chunk in chunks:
        if not too_long:
            block, too_long = framer.feed_block(chunk)
            assert block == b"" or block.endswith(b"\n")
            lines += block.split(b"\n")[:-1]
    assert (lines, too_long, framer.finish()) == framed_by_the_book(chunks, limit)
