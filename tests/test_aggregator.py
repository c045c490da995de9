"""Per-minute aggregation in memory: Bucket, Batch, Aggregator, minute_start.

Pure Python: no database, no Django.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors.ingest.aggregator import Aggregator, Batch, Bucket, minute_start

MAC = "5c:cf:7f:0a:1b:2c"
OTHER_MAC = "5c:cf:7f:0a:1b:2d"
BOUNDARY = 1764000000  # 29_400_000 * 60: checked by test_reference_timestamp_is_a_minute_boundary


def snapshot(batch: Batch) -> dict[tuple[str, str, int], tuple[int, float, float, float]]:
    return {key: (b.count, b.total, b.low, b.high) for key, b in batch.buckets.items()}


# --- Bucket -----------------------------------------------------------------------------
def test_new_bucket_holds_one_value() -> None:
    bucket = Bucket(21.5)
    assert (bucket.count, bucket.total, bucket.low, bucket.high, bucket.mean) == (1, 21.5, 21.5, 21.5, 21.5)


def test_bucket_add_updates_count_total_low_high_and_mean() -> None:
    bucket = Bucket(5.0)
    for value in (3.0, 7.5, 4.0):
        bucket.add(value)
    assert (bucket.count, bucket.total, bucket.low, bucket.high) == (4, 19.5, 3.0, 7.5)
    assert bucket.mean == 19.5 / 4


def test_bucket_add_rising_then_falling_values_tracks_both_extremes() -> None:
    bucket = Bucket(0.0)
    for value in (1.0, 2.0, -1.0, -2.0):
        bucket.add(value)
    assert (bucket.low, bucket.high) == (-2.0, 2.0)


def test_bucket_merge_adds_counts_and_totals_and_keeps_extremes() -> None:
    a = Bucket(1.0)
    a.add(9.0)
    b = Bucket(-2.0)
    b.add(4.0)
    a.merge(b)
    assert (a.count, a.total, a.low, a.high, a.mean) == (4, 12.0, -2.0, 9.0, 3.0)


def test_bucket_merge_with_narrower_bucket_keeps_own_extremes() -> None:
    a = Bucket(-5.0)
    a.add(50.0)
    a.merge(Bucket(10.0))
    assert (a.count, a.total, a.low, a.high) == (3, 55.0, -5.0, 50.0)


# --- minute_start -----------------------------------------------------------------------
def test_reference_timestamp_is_a_minute_boundary() -> None:
    assert BOUNDARY % 60 == 0
    assert BOUNDARY // 60 == 29_400_000


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param(BOUNDARY, BOUNDARY, id="exact-boundary-int"),
        pytest.param(float(BOUNDARY), BOUNDARY, id="exact-boundary-float"),
        pytest.param(BOUNDARY + 0.001, BOUNDARY, id="just-after-boundary"),
        pytest.param(BOUNDARY + 59.999, BOUNDARY, id="end-of-minute"),
        pytest.param(BOUNDARY + 60, BOUNDARY + 60, id="next-boundary"),
        pytest.param(BOUNDARY - 1, BOUNDARY - 60, id="one-second-before"),
        pytest.param(BOUNDARY - 0.001, BOUNDARY - 60, id="a-millisecond-before"),
        pytest.param(0, 0, id="epoch"),
        pytest.param(59.9, 0, id="epoch-end-of-first-minute"),
        pytest.param(-0.5, -60, id="before-epoch-floors-down"),
    ],
)
def test_minute_start(timestamp: float, expected: int) -> None:
    result = minute_start(timestamp)
    assert result == expected
    assert isinstance(result, int)


# --- Batch ------------------------------------------------------------------------------
SAMPLES = [
    (MAC, "humidity", BOUNDARY, 40.0),
    (MAC, "humidity", BOUNDARY, 44.0),
    (MAC, "air_temperature", BOUNDARY, 21.0),
    (MAC, "humidity", BOUNDARY + 60, 50.0),
    (OTHER_MAC, "humidity", BOUNDARY, 60.0),
    (MAC, "humidity", BOUNDARY, 38.0),
    (OTHER_MAC, "humidity", BOUNDARY, 61.0),
]


def test_batch_add_groups_samples_by_mac_metric_and_minute() -> None:
    batch = Batch()
    for sample in SAMPLES:
        batch.add(*sample)
    assert snapshot(batch) == {
        (MAC, "humidity", BOUNDARY): (3, 122.0, 38.0, 44.0),
        (MAC, "air_temperature", BOUNDARY): (1, 21.0, 21.0, 21.0),
        (MAC, "humidity", BOUNDARY + 60): (1, 50.0, 50.0, 50.0),
        (OTHER_MAC, "humidity", BOUNDARY): (2, 121.0, 60.0, 61.0),
    }
    assert batch.sample_count == len(SAMPLES)


def test_merging_two_batches_gives_the_same_buckets_as_one_batch() -> None:
    whole, first, second = Batch(), Batch(), Batch()
    for index, sample in enumerate(SAMPLES):
        whole.add(*sample)
        (first if index % 2 else second).add(*sample)
    first.merge(second)
    assert snapshot(first) == snapshot(whole)


def test_merging_into_an_empty_batch_copies_everything() -> None:
    empty, full = Batch(), Batch()
    for sample in SAMPLES:
        full.add(*sample)
    full.seen(MAC, 10.0, "10.0.0.1")
    expected = snapshot(full)
    empty.merge(full)
    assert snapshot(empty) == expected
    assert empty.sensors[MAC].first_seen == 10.0


def test_batch_without_sensors_is_falsy() -> None:
    batch = Batch()
    assert not batch
    batch.seen(MAC, 1.0, "10.0.0.1")
    assert batch


def test_seen_later_updates_last_seen_and_peer_but_not_first_seen() -> None:
    batch = Batch()
    batch.seen(MAC, 100.0, "10.0.0.1")
    batch.seen(MAC, 200.0, "10.0.0.2")
    seen = batch.sensors[MAC]
    assert (seen.first_seen, seen.last_seen, seen.peer) == (100.0, 200.0, "10.0.0.2")


def test_seen_with_an_earlier_timestamp_lowers_first_seen() -> None:
    batch = Batch()
    batch.seen(MAC, 200.0, "10.0.0.2")
    batch.seen(MAC, 100.0, "10.0.0.1")
    seen = batch.sensors[MAC]
    assert (seen.first_seen, seen.last_seen, seen.peer) == (100.0, 200.0, "10.0.0.2")


def test_merged_sensor_seen_keeps_earliest_first_latest_last_and_latest_peer() -> None:
    a, b = Batch(), Batch()
    a.seen(MAC, 100.0, "10.0.0.1")
    a.seen(MAC, 200.0, "10.0.0.2")
    b.seen(MAC, 50.0, "10.0.0.3")
    b.seen(MAC, 300.0, "10.0.0.4")
    a.merge(b)
    seen = a.sensors[MAC]
    assert (seen.first_seen, seen.last_seen, seen.peer) == (50.0, 300.0, "10.0.0.4")


def test_merged_sensor_seen_keeps_own_peer_when_it_was_seen_last() -> None:
    a, b = Batch(), Batch()
    a.seen(MAC, 100.0, "10.0.0.1")
    a.seen(MAC, 400.0, "10.0.0.2")
    b.seen(MAC, 50.0, "10.0.0.3")
    b.seen(MAC, 300.0, "10.0.0.4")
    a.merge(b)
    seen = a.sensors[MAC]
    assert (seen.first_seen, seen.last_seen, seen.peer) == (50.0, 400.0, "10.0.0.2")


def test_merge_keeps_sensors_seen_in_only_one_batch() -> None:
    a, b = Batch(), Batch()
    a.seen(MAC, 1.0, "10.0.0.1")
    b.seen(OTHER_MAC, 2.0, "10.0.0.2")
    a.merge(b)
    assert set(a.sensors) == {MAC, OTHER_MAC}


# --- Aggregator -------------------------------------------------------------------------
def test_samples_in_different_utc_minutes_go_to_different_buckets() -> None:
    aggregator = Aggregator()
    aggregator.add(MAC, (("humidity", 40.0),), BOUNDARY - 0.5, "10.0.0.1")
    aggregator.add(MAC, (("humidity", 42.0),), BOUNDARY + 0.0, "10.0.0.1")
    aggregator.add(MAC, (("humidity", 44.0),), BOUNDARY + 59.5, "10.0.0.1")
    assert aggregator.pending_buckets == 2
    assert snapshot(aggregator.drain()) == {
        (MAC, "humidity", BOUNDARY - 60): (1, 40.0, 40.0, 40.0),
        (MAC, "humidity", BOUNDARY): (2, 86.0, 42.0, 44.0),
    }


def test_aggregator_add_records_every_value_of_a_line_and_the_sensor() -> None:
    aggregator = Aggregator()
    refused = aggregator.add(MAC, (("soil_moisture", 612.0), ("humidity", 48.0)), BOUNDARY + 5, "10.0.0.1")
    assert refused == 0
    batch = aggregator.drain()
    assert set(batch.buckets) == {(MAC, "soil_moisture", BOUNDARY), (MAC, "humidity", BOUNDARY)}
    seen = batch.sensors[MAC]
    assert (seen.first_seen, seen.last_seen, seen.peer) == (BOUNDARY + 5, BOUNDARY + 5, "10.0.0.1")


def test_drain_returns_the_batch_and_starts_empty() -> None:
    aggregator = Aggregator()
    aggregator.add(MAC, (("humidity", 40.0),), BOUNDARY, "10.0.0.1")
    batch = aggregator.drain()
    assert batch.sample_count == 1
    assert MAC in batch.sensors
    assert aggregator.pending_buckets == 0
    again = aggregator.drain()
    assert not again
    assert again.buckets == {}
    assert again is not batch


def test_samples_after_drain_go_to_the_new_batch_only() -> None:
    aggregator = Aggregator()
    aggregator.add(MAC, (("humidity", 40.0),), BOUNDARY, "10.0.0.1")
    first = aggregator.drain()
    aggregator.add(MAC, (("humidity", 50.0),), BOUNDARY, "10.0.0.1")
    assert snapshot(first) == {(MAC, "humidity", BOUNDARY): (1, 40.0, 40.0, 40.0)}
    assert snapshot(aggregator.drain()) == {(MAC, "humidity", BOUNDARY): (1, 50.0, 50.0, 50.0)}


def test_metric_limit_refuses_new_metric_names_but_accepts_known_ones() -> None:
    aggregator = Aggregator(max_metrics_per_sensor=2)
    assert aggregator.add(MAC, (("a", 1.0), ("b", 2.0), ("c", 3.0)), BOUNDARY, "p") == 1
    assert aggregator.add(MAC, (("a", 4.0), ("d", 5.0), ("b", 6.0)), BOUNDARY, "p") == 1
    batch = aggregator.drain()
    assert snapshot(batch) == {
        (MAC, "a", BOUNDARY): (2, 5.0, 1.0, 4.0),
        (MAC, "b", BOUNDARY): (2, 8.0, 2.0, 6.0),
    }


def test_metric_limit_is_per_sensor() -> None:
    aggregator = Aggregator(max_metrics_per_sensor=1)
    assert aggregator.add(MAC, (("a", 1.0), ("b", 1.0)), BOUNDARY, "p") == 1
    assert aggregator.add(OTHER_MAC, (("b", 1.0),), BOUNDARY, "p") == 0


def test_metric_limit_outlives_drain() -> None:
    aggregator = Aggregator(max_metrics_per_sensor=1)
    aggregator.add(MAC, (("a", 1.0),), BOUNDARY, "p")
    aggregator.drain()
    assert aggregator.add(MAC, (("b", 1.0),), BOUNDARY, "p") == 1
    assert aggregator.add(MAC, (("a", 2.0),), BOUNDARY, "p") == 0


def test_line_with_every_metric_refused_does_not_mark_sensor_seen() -> None:
    aggregator = Aggregator(max_metrics_per_sensor=1)
    aggregator.add(MAC, (("a", 1.0),), BOUNDARY, "p")
    aggregator.drain()
    assert aggregator.add(MAC, (("b", 1.0), ("c", 2.0)), BOUNDARY + 1, "q") == 2
    batch = aggregator.drain()
    assert not batch
    assert batch.buckets == {}


# --- Hypothesis: any split of the stream gives the same totals --------------------------
samples_strategy = st.lists(
    st.tuples(
        st.sampled_from([MAC, OTHER_MAC, "aa:bb:cc:dd:ee:ff"]),
        st.sampled_from(["soil_moisture", "air_temperature", "humidity", "light"]),
        st.floats(min_value=BOUNDARY - 120, max_value=BOUNDARY + 240, allow_nan=False),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    max_size=60,
)


@given(samples=samples_strategy, data=st.data())
def test_any_partition_into_drained_batches_merges_to_the_same_totals(
    samples: list[tuple[str, str, float, float]], data: st.DataObject
) -> None:
    whole = Aggregator()
    for mac, metric, timestamp, value in samples:
        assert whole.add(mac, ((metric, value),), timestamp, "peer") == 0
    expected = whole.drain()

    cuts = sorted(data.draw(st.sets(st.integers(0, len(samples))), label="cuts"))
    bounds = [0, *cuts, len(samples)]
    split = Aggregator()
    merged = Batch()
    for start, end in itertools.pairwise(bounds):
        for mac, metric, timestamp, value in samples[start:end]:
            split.add(mac, ((metric, value),), timestamp, "peer")
        merged.merge(split.drain())

    assert merged.buckets.keys() == expected.buckets.keys()
    assert merged.sensors.keys() == expected.sensors.keys()
    for key, want in expected.buckets.items():
        got = merged.buckets[key]
        assert (got.count, got.low, got.high) == (want.count, want.low, want.high), key
        # float sums depend on the order of addition: equal within 1e-9 of the magnitudes summed
        magnitude = sum(abs(v) for m, k, t, v in samples if (m, k, minute_start(t)) == key)
        assert math.isclose(got.total, want.total, rel_tol=1e-9, abs_tol=1e-9 * magnitude), key


def test_metric_sets_are_forgotten_beyond_the_tracked_sensor_bound(monkeypatch) -> None:
    monkeypatch.setattr(Aggregator, "MAX_TRACKED_SENSORS", 3)
    aggregator = Aggregator(max_metrics_per_sensor=1)
    for index in range(10):
        assert aggregator.add(f"5c:cf:7f:00:00:{index:02x}", (("humidity", 50.0),), 0.0, "peer") == 0
    assert len(aggregator._metrics) <= 3


def test_merge_with_a_bound_still_adds_to_existing_buckets_and_reports_dropped_samples() -> None:
    pending, incoming = Batch(), Batch()
    pending.add(MAC, "humidity", 0, 1.0)
    incoming.add(MAC, "humidity", 0, 2.0)
    incoming.add(MAC, "humidity", 60, 3.0)
    incoming.add(MAC, "humidity", 60, 4.0)
    assert pending.merge(incoming, max_buckets=1) == 2
    assert pending.buckets[(MAC, "humidity", 0)].count == 2
    assert (MAC, "humidity", 60) not in pending.buckets


def test_drain_closed_takes_only_the_minutes_before_the_current_one_with_their_sensors() -> None:
    aggregator = Aggregator()
    aggregator.add(MAC, (("humidity", 40.0),), BOUNDARY - 1, "p")
    aggregator.add(OTHER_MAC, (("humidity", 41.0),), BOUNDARY + 1, "p")
    closed = aggregator.drain_closed(BOUNDARY)
    assert snapshot(closed) == {(MAC, "humidity", BOUNDARY - 60): (1, 40.0, 40.0, 40.0)}
    assert set(closed.sensors) == {MAC}
    assert aggregator.minutes == [BOUNDARY]
    assert not aggregator.drain_closed(BOUNDARY)
    rest = aggregator.drain()
    assert snapshot(rest) == {(OTHER_MAC, "humidity", BOUNDARY): (1, 41.0, 41.0, 41.0)}
    assert aggregator.pending_buckets == 0


def test_firmware_columns_add_like_lines_and_decline_sensors_without_the_three_metrics() -> None:
    columns = ((MAC, MAC), [600.0, 610.0], [20.0, 21.5], [50.0, 49.0])
    fast = Aggregator()
    assert fast.add_firmware_lines(*columns, BOUNDARY, "p") is False  # metric limit not checked yet
    assert fast.pending_buckets == 0
    slow = Aggregator()
    for aggregator in (fast, slow):
        aggregator.add(MAC, (("soil_moisture", 1.0), ("air_temperature", 2.0), ("humidity", 3.0)), BOUNDARY, "p")
    assert fast.add_firmware_lines(*columns, BOUNDARY + 1, "q") is True
    for soil, temp, hum in zip(*columns[1:], strict=True):
        slow.add(MAC, (("soil_moisture", soil), ("air_temperature", temp), ("humidity", hum)), BOUNDARY + 1, "q")
    fast_batch, slow_batch = fast.drain(), slow.drain()
    assert snapshot(fast_batch) == snapshot(slow_batch)
    assert fast_batch.sensors == slow_batch.sensors


def test_live_values_give_the_newest_sample_and_the_held_samples_of_its_minute_and_the_one_before():
    """A rule reading the latest value must not see a minute that has just begun as sparse data."""
    aggregator = Aggregator()
    mac, other = "5c:cf:7f:0a:1b:2c", "5c:cf:7f:0a:1b:2d"
    minute = 1_764_000_000
    for second, value in ((50, 20.0), (55, 19.0), (58, 18.0)):
        aggregator.add(mac, (("air_temperature", value),), minute + second, "192.0.2.7")
    aggregator.add(mac, (("air_temperature", 3.0),), minute + 61, "192.0.2.7")  # the next minute begins
    aggregator.add(other, (("air_temperature", 25.0),), minute + 61, "192.0.2.8")
    live = aggregator.live_values({mac})
    value = live.live[(mac, "air_temperature")]
    assert (value.value, value.minute, value.samples, value.received_at) == (3.0, minute + 60, 4, minute + 61)
    assert set(live.sensors) == {mac} and not live.buckets  # only the watched sensor; the minutes stay held
    assert aggregator.pending_buckets == 3
    assert aggregator.live_values(set()).live == {}
