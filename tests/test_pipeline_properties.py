"""Property: however TCP splits a board's byte stream, frame -> parse -> aggregate gives the same totals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.ingest.aggregator import Aggregator
from sensors.ingest.framing import LineFramer
from sensors.ingest.protocol import Accepted, parse_line

GOOD = st.builds(
    lambda soil, temp, hum, mac: f"Soil: {soil}; temp: {temp}; hum: {hum}; from 5c:cf:7f:00:00:{mac:02x}\n".encode(),
    st.integers(0, 1024),
    st.integers(-60, 100),
    st.integers(0, 100),
    st.integers(0, 3),
)
BAD = st.sampled_from(
    [
        b"Soil: nan; from 5c:cf:7f:00:00:01\n",
        b"temp: 1e999; from 5c:cf:7f:00:00:01\n",
        b"\xff\xfe\xfd\n",
        b"'; DROP TABLE sensors_reading; --\n",
        b"hum: 48\n",
        b"\r\n",
        b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c \xc3\n",  # a UTF-8 sequence cut short
    ]
)
STREAM = st.lists(
    st.one_of(GOOD, BAD, st.binary(max_size=60).filter(lambda b: b"\n" not in b).map(lambda b: b + b"\n")), max_size=40
).map(b"".join)


def totals(chunks: list[bytes]) -> dict:
    framer, aggregator = LineFramer(), Aggregator()
    for chunk in chunks:
        block, too_long = framer.feed_block(chunk)
        assert not too_long
        for line in block.split(b"\n")[:-1]:
            parsed = parse_line(line)
            if isinstance(parsed, Accepted):
                aggregator.add(parsed.mac, parsed.values, 1_764_000_000.0, "peer")
    return {key: (b.count, b.total, b.low, b.high) for key, b in aggregator.drain().buckets.items()}


@settings(max_examples=300, deadline=None)
@given(stream=STREAM, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_of_a_byte_stream_gives_the_same_aggregates_as_the_whole_stream(stream, cuts):
    positions = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *positions], [*positions, len(stream)], strict=True)]
    assert totals(chunks) == totals([stream])
