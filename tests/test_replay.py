"""Replaying journal records: only what the database lacks, only up to where memory takes over."""

from __future__ import annotations

from sensors.ingest.journal import RAW, SAMPLES, Record
from sensors.ingest.replay import Bounds, batches, encode_samples, entry_values

MINUTE = 1_764_000_000  # a UTC minute start
MAC = "5c:cf:7f:0a:1b:2c"


def line(soil: int) -> bytes:
    return f"Soil: {soil}; temp: 21; hum: 48; from {MAC}\n".encode()


def soil_counts(batch_list) -> dict[int, int]:
    return {
        key[2]: bucket.count
        for batch in batch_list
        for key, bucket in batch.buckets.items()
        if key[1] == "soil_moisture"
    }


RECORDS = [
    Record(1, [(MINUTE + 1.0, "192.0.2.7", line(600), RAW)]),
    Record(2, [(MINUTE + 2.0, "192.0.2.7", line(601) + line(602), RAW)]),
    Record(3, [(MINUTE + 61.0, "192.0.2.7", line(603), RAW)]),
    Record(4, [(MINUTE + 62.0, "192.0.2.7", encode_samples(MAC, [("soil_moisture", 604.5)]), SAMPLES)]),
]


def test_everything_is_replayed_when_the_database_has_no_mark():
    replayed = list(batches(RECORDS, "j", {}, Bounds(through=4)))
    assert soil_counts(replayed) == {MINUTE: 3, MINUTE + 60: 2}
    (batch,) = replayed
    assert batch.marks == {MINUTE: 2, MINUTE + 60: 4} and batch.journal == "j"
    assert batch.sensors[MAC].last_seen == MINUTE + 62.0


def test_records_at_or_below_a_minutes_mark_are_skipped():
    bounds = Bounds(through=4)
    replayed = list(batches(RECORDS, "j", {MINUTE: 1, MINUTE + 60: 4}, bounds))
    assert soil_counts(replayed) == {MINUTE: 2}
    assert bounds.already_stored == 3  # entries, counted for the log


def test_a_minute_is_replayed_only_up_to_its_bound_the_rest_is_in_memory():
    bounds = Bounds(minutes={MINUTE: 4, MINUTE + 60: 3})
    (batch,) = batches(RECORDS, "j", {}, bounds)
    assert soil_counts([batch]) == {MINUTE: 3, MINUTE + 60: 1}
    assert batch.marks == {MINUTE: 2, MINUTE + 60: 3}  # never past the bound


def test_long_replays_come_in_bounded_batches_with_marks_that_move_on():
    records = [Record(seq, [(MINUTE + seq, "192.0.2.7", line(600), RAW)]) for seq in range(1, 11)]
    replayed = list(batches(records, "j", {}, Bounds(through=10), max_buckets=3))
    assert len(replayed) == 10  # 3 buckets per line: one line per batch
    assert [batch.marks[MINUTE] for batch in replayed] == list(range(1, 11))


def test_samples_entries_keep_every_float_exact():
    values = [("soil_moisture", 0.1 + 0.2), ("light", 1e-300)]
    ((mac, decoded),) = list(entry_values(encode_samples(MAC, values), SAMPLES))
    assert mac == MAC and decoded == tuple(values)
