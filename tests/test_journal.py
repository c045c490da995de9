"""The journal on disk: records come back as written, a torn tail is cut, a full disk is a logged error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sensors.ingest.journal import RAW, SAMPLES, Journal, Record, read_segment

LINE = b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c\n"


def record(seq: int, count: int = 3, start: float = 1_764_000_000.0) -> Record:
    return Record(seq, [(start + index, "192.0.2.7", LINE, RAW) for index in range(count)])


def test_records_come_back_from_disk_exactly_as_cut(tmp_path):
    journal, others = Journal.open(tmp_path)
    assert others == []
    journal.entries.append((1_764_000_000.25, "192.0.2.7", LINE * 2, RAW))
    journal.entries.append((1_764_000_001.5, "192.0.2.8", b"5c:cf:7f:0a:1b:2c light=340.0", SAMPLES))
    assert journal.cut() == 1
    assert journal.cut() == 1  # nothing new: no empty record
    journal.write_records([journal._queue.get()])
    journal.stop()

    again, _ = Journal.open(tmp_path)
    assert again.id == journal.id and again.last_seq == 1
    (only,) = list(again.records())
    assert only.seq == 1
    assert only.entries == [
        (1_764_000_000.25, "192.0.2.7", LINE * 2, RAW),
        (1_764_000_001.5, "192.0.2.8", b"5c:cf:7f:0a:1b:2c light=340.0", SAMPLES),
    ]
    assert list(again.records(after=1)) == []


def test_a_torn_last_record_is_cut_off_with_one_log_line_and_the_rest_kept(tmp_path, caplog):
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1), record(2)])
    segment = journal._segments[-1].path
    whole = segment.stat().st_size
    journal.stop()
    with open(segment, "ab") as file:  # a power cut in the middle of the third record
        file.write(b"GHJ1" + b"\x03" + b"\x00" * 9)

    again, _ = Journal.open(tmp_path)
    assert [r.seq for r in again.records()] == [1, 2]
    assert again.last_seq == 2 and again.torn_records == 1
    assert segment.stat().st_size == whole  # cut back to the last whole record
    assert caplog.text.count("cut a torn or damaged record") == 1


def test_a_flipped_bit_fails_the_checksum(tmp_path):
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1), record(2)])
    segment = journal._segments[-1].path
    journal.stop()
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0x01  # inside the second record's payload
    segment.write_bytes(bytes(data))
    found, length = read_segment(segment)
    assert [seq for seq, _, _ in found] == [1]
    assert length < len(data)


def test_a_full_disk_is_a_logged_error_and_the_journal_goes_on_in_a_new_segment(tmp_path, caplog):
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1)])
    journal._close_file()  # the next record starts a segment ...
    (journal.directory / f"{2:020d}.seg").symlink_to("/dev/full")  # ... on a disk that is full (ENOSPC)
    journal.write_records([record(2)])
    assert "cannot write (the disk is full)" in caplog.text
    assert journal.write_errors == 1 and journal.dropped_records == 1
    assert journal.covers(1) and not journal.covers(2)  # memory must keep record 2's samples
    journal.write_records([record(3)])  # space again: a new segment
    assert [r.seq for r in journal.records()] == [1, 3]
    journal.committed(2)
    assert journal.covers(3)  # the database has record 2 now; nothing missing above it


def test_records_over_the_size_bound_are_dropped_counted_and_logged(tmp_path, caplog):
    journal, _ = Journal.open(tmp_path, max_bytes=600)
    for seq in range(1, 8):
        journal.write_records([record(seq, count=5)])
    assert 0 < journal.records_written < 7
    assert journal.dropped_records == 7 - journal.records_written
    assert journal._total_bytes() <= 600
    assert "the journal is full (COLLECTOR_JOURNAL_MAX_BYTES)" in caplog.text


def test_committed_segments_are_deleted(tmp_path):
    journal, _ = Journal.open(tmp_path, segment_seconds=0)  # every write starts a new segment
    for seq in (1, 2, 3):
        journal.write_records([record(seq)])
    assert len(list(journal.directory.glob("*.seg"))) == 3
    journal.committed(2)
    journal.write_records([record(4)])
    assert sorted(path.name for path in journal.directory.glob("*.seg")) == [f"{3:020d}.seg", f"{4:020d}.seg"]
    assert [r.seq for r in journal.records(after=journal.committed_through)] == [3, 4]


def test_a_live_collectors_journal_is_never_taken_and_a_dead_ones_is(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sensors.ingest.journal import Journal; "
            "j, _ = Journal.open(Path(sys.argv[1])); print(j.id, flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        held = holder.stdout.readline().strip()
        mine, others = Journal.open(tmp_path)
        assert mine.id != held and others == []  # a second collector gets a journal of its own
        mine.stop()
        holder.kill()  # SIGKILL: the OS releases its lock
        holder.wait(10)
        deadline = time.monotonic() + 5
        while True:
            first, others = Journal.open(tmp_path)
            ids = {first.id, *(other.id for other in others)}
            if held in ids or time.monotonic() > deadline:
                break
        assert ids == {held, mine.id}  # the dead one's journal is free: replayed and removed by the caller
    finally:
        holder.kill()
        holder.wait(10)


def test_journal_thread_writes_what_is_cut_within_the_sync(tmp_path):
    journal, _ = Journal.open(tmp_path)
    journal.start()
    journal.entries.append((1_764_000_000.0, "192.0.2.7", LINE, RAW))
    seq = journal.cut()
    assert journal.sync(5.0)
    assert journal.synced_through == seq and journal.covers(seq)
    assert journal.stop()
    assert os.path.getsize(journal._segments[-1].path) > 0


def test_record_numbers_never_start_over_once_committed_segments_are_deleted(tmp_path):
    """The database's marks name record numbers: a restarted journal that numbered from 1 again
    would make its new records look stored already (they would be skipped: lost)."""
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1), record(2)])
    journal.last_seq = 2
    journal.committed(2)
    journal.stop()  # a clean stop: every segment is deleted
    assert list(journal.directory.glob("*.seg")) == []
    again, _ = Journal.open(tmp_path)
    assert again.id == journal.id and not again.has_records
    again.entries.append((1_764_000_100.0, "192.0.2.7", LINE, RAW))
    assert again.cut() == 3


def test_numbering_moves_past_the_newest_mark_the_database_has(tmp_path):
    journal, _ = Journal.open(tmp_path)
    journal.advance_past(41)
    journal.entries.append((1_764_000_100.0, "192.0.2.7", LINE, RAW))
    assert journal.cut() == 42


def test_a_full_disk_never_keeps_stored_segments_on_it(tmp_path, caplog):
    """The record number cannot be saved (ENOSPC): every stored segment but the newest still goes."""
    journal, _ = Journal.open(tmp_path, segment_seconds=0)
    for seq in (1, 2, 3):
        journal.write_records([record(seq)])
    (journal.directory / "seq.tmp").symlink_to("/dev/full")
    journal.committed(3)
    journal._delete_committed()
    assert [path.name for path in journal.directory.glob("*.seg")] == [f"{3:020d}.seg"]
    assert "cannot save its record number" in caplog.text


def test_a_failed_write_leaves_no_empty_segment_behind(tmp_path):
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1)])
    for seq in (2, 3, 4):
        journal._close_file()
        (journal.directory / f"{seq:020d}.seg").symlink_to("/dev/full")
        journal.write_records([record(seq)])
    assert sorted(path.name for path in journal.directory.glob("*.seg")) == [f"{1:020d}.seg"]
    assert len(journal._segments) == 1


def test_a_stop_with_nothing_new_does_not_wait_for_the_journal(tmp_path):
    journal, _ = Journal.open(tmp_path)
    journal.write_records([record(1)])
    journal.stop()
    again, _ = Journal.open(tmp_path)
    again.start()
    started = time.monotonic()
    assert again.sync(2.0)
    assert time.monotonic() - started < 0.5
    again.stop()


def test_a_replayed_journal_is_renamed_away_while_locked_then_removed(tmp_path):
    from sensors.ingest.journal import retire

    first, _ = Journal.open(tmp_path)
    first.stop()
    mine, _ = Journal.open(tmp_path / "x")  # another base: nothing to do with the first
    mine.stop()
    dead, _ = Journal.open(tmp_path)
    retire(dead)
    assert list(tmp_path.iterdir()) == [tmp_path / "x"]
