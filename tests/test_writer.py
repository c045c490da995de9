"""The writer thread keeps and retries what it could not store, and reports what it lost."""

from __future__ import annotations

import pytest

from sensors.ingest.aggregator import Batch
from sensors.ingest.writer import Writer


def batch_of(samples: int, mac: str = "5c:cf:7f:0a:1b:2c") -> Batch:
    batch = Batch()
    for index in range(samples):
        batch.add(mac, "humidity", 1_764_000_000, float(index))
        batch.seen(mac, 1_764_000_000.0 + index, "127.0.0.1")
    return batch


class FlakyStore:
    """Fails the first `failures` calls, like a locked or unreachable database."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.stored: list[Batch] = []

    def __call__(self, batch: Batch) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError("database is locked")
        self.stored.append(batch)
        return len(batch.buckets)


def test_failed_write_is_kept_merged_with_later_batches_and_stored_once():
    store = FlakyStore(failures=2)
    writer = Writer(store)
    writer.submit(batch_of(3))
    assert writer.write_pending() is False
    writer.submit(batch_of(2))
    assert writer.write_pending() is False
    assert writer.write_pending() is True
    assert len(store.stored) == 1
    bucket = next(iter(store.stored[0].buckets.values()))
    assert (bucket.count, bucket.total, bucket.low, bucket.high) == (5, 4.0, 0.0, 2.0)


def test_writer_thread_retries_with_backoff_until_the_database_is_back(caplog):
    store = FlakyStore(failures=3)
    writer = Writer(store, retry_initial=0.01, retry_max=0.05)
    writer.start()
    writer.submit(batch_of(4))
    assert writer.finish(timeout=5) == 0
    assert sum(b.sample_count for b in store.stored) == 4
    assert "cannot write 1 buckets; keeping them and retrying" in caplog.text
    assert "database writes recovered after 3 failed attempts" in caplog.text


@pytest.mark.parametrize("started", [True, False])
def test_finish_reports_samples_it_could_not_write(started):
    writer = Writer(FlakyStore(failures=10**6), retry_initial=0.01, retry_max=0.02)
    if started:
        writer.start()
    writer.submit(batch_of(7))
    assert writer.finish(timeout=0.3) == 7


def test_empty_batches_are_not_written():
    store = FlakyStore(failures=0)
    writer = Writer(store)
    writer.submit(Batch())
    assert writer.write_pending() is True
    assert store.stored == []


def test_pending_data_is_bounded_during_an_outage_and_drops_are_counted(caplog):
    writer = Writer(FlakyStore(failures=10**6), max_pending_buckets=2)
    for minute in range(4):
        batch = Batch()
        batch.add("5c:cf:7f:0a:1b:2c", "humidity", 1_764_000_000 + 60 * minute, 50.0)
        batch.add("5c:cf:7f:0a:1b:2c", "humidity", 1_764_000_000 + 60 * minute, 51.0)
        batch.seen("5c:cf:7f:0a:1b:2c", 1_764_000_000.0 + 60 * minute, "127.0.0.1")
        writer.submit(batch)
        writer.write_pending()
    assert writer.pending_buckets == 2
    assert writer.dropped_samples == 4  # minutes 3 and 4, two samples each
    assert "dropped 2 new samples" in caplog.text


def test_an_outage_is_logged_in_one_line_and_a_bug_with_its_traceback(caplog):
    """A database that is away is expected (one line, no traceback); anything else is a bug."""

    class Outage(Exception):
        pass

    def away(batch):
        raise Outage("database is locked")

    def buggy(batch):
        raise KeyError("mac")

    for store in (away, buggy):
        writer = Writer(store, outage_errors=(Outage,))
        writer.submit(batch_of(1))
        assert writer.write_pending() is False
    outage, bug = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert "Outage: database is locked" in outage.getMessage() and outage.exc_info is None
    assert bug.exc_info is not None and isinstance(bug.exc_info[1], KeyError)


# --- with a journal: exactly once on the real database ---------------------------------------
MAC = "5c:cf:7f:0a:1b:2c"
MINUTE = 1_764_000_000


def journaled_batch(
    journal, soils: list[int], at: float = MINUTE + 1.0, complete: bool = True, on_disk: bool = True
) -> Batch:
    """A drained batch of firmware lines as the collector makes it: journaled, cut, stamped
    (and, `on_disk`, written by the journal thread)."""
    from sensors.ingest.journal import RAW

    batch = Batch()
    for soil in soils:
        journal.entries.append((at, "192.0.2.7", f"Soil: {soil}; temp: 20; hum: 50; from {MAC}\n".encode(), RAW))
        for metric, value in (("soil_moisture", soil), ("air_temperature", 20.0), ("humidity", 50.0)):
            batch.add(MAC, metric, int(at // 60) * 60, float(value))
        batch.seen(MAC, at, "192.0.2.7")
    batch.journal, batch.seq = journal.id, journal.cut()
    batch.marks, batch.complete = {int(at // 60) * 60: batch.seq}, complete
    if on_disk:
        journal.write_records([journal._queue.get()])  # the journal thread's step
    return batch


def stored_soil() -> tuple[int, float]:
    from sensors.models import Reading

    rows = Reading.objects.filter(metric="soil_moisture").values_list("samples", "value_sum")
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_disk", [False, True], ids=["retried-from-memory", "replayed-from-the-journal"])
def test_a_commit_whose_answer_is_lost_is_not_counted_twice_on_retry(tmp_path, on_disk):
    """The COMMIT reaches the database but the connection breaks before the answer (a real risk on
    PostgreSQL): the writer retries the batch (or, once the journal has it on disk, replays it),
    and the journal mark stored with the minute skips what was committed."""
    from django.db import OperationalError

    from sensors import storage
    from sensors.ingest.journal import Journal

    journal, _ = Journal.open(tmp_path)
    answers_lost = [True]

    def store(batch: Batch) -> int:
        rows = storage.write_batch(batch)  # committed ...
        if answers_lost.pop() if answers_lost else False:
            raise OperationalError("server closed the connection unexpectedly")  # ... answer lost
        return rows

    writer = Writer(store, journal=journal, load_marks=storage.journal_marks, outage_errors=(OperationalError,))
    writer.submit(journaled_batch(journal, [600, 601], on_disk=on_disk))
    assert writer.write_pending() is False
    assert writer.catching_up is on_disk
    writer.submit(journaled_batch(journal, [602], on_disk=on_disk))  # while the first is retried: not merged
    while not writer.write_pending():
        pass
    assert stored_soil() == (3, 1803.0)


@pytest.mark.django_db(transaction=True)
def test_an_outage_leaves_the_batches_to_the_journal_and_they_are_written_once_when_it_is_back(tmp_path, caplog):
    from django.db import OperationalError

    from sensors import storage
    from sensors.ingest.journal import Journal

    journal, _ = Journal.open(tmp_path)
    database_up = False

    def store(batch: Batch) -> int:
        if not database_up:
            raise OperationalError("database is locked")
        return storage.write_batch(batch)

    writer = Writer(store, journal=journal, load_marks=storage.journal_marks, outage_errors=(OperationalError,))
    writer.submit(journaled_batch(journal, [600, 601], complete=False))
    assert writer.write_pending() is False
    assert writer.pending_buckets == 0 and writer.catching_up  # memory forgot it: the journal has it
    for minute in range(1, 4):  # later minutes arrive during the outage: left to the journal too
        writer.submit(journaled_batch(journal, [700 + minute], at=MINUTE + 60 * minute + 1.0))
        assert writer.write_pending() is False
        assert writer.pending_buckets == 0
    assert "samples left to the journal until the database is back" in caplog.text
    database_up = True
    while not writer.write_pending():
        pass
    assert stored_soil() == (5, 600 + 601 + 701 + 702 + 703)
    writer.submit(journaled_batch(journal, [800], at=MINUTE + 241.0))  # live again, after the replay
    assert writer.write_pending() is True
    assert stored_soil() == (6, 600 + 601 + 701 + 702 + 703 + 800)


@pytest.mark.django_db(transaction=True)
def test_batches_beyond_the_memory_bound_are_left_to_the_journal_not_dropped(tmp_path):
    """A store that blocks for long (a lock wait) lets batches queue up beyond the bound: those the
    journal holds are replayed from it, none is dropped while its marks say stored."""
    from sensors import storage
    from sensors.ingest.journal import Journal

    journal, _ = Journal.open(tmp_path)
    writer = Writer(storage.write_batch, journal=journal, load_marks=storage.journal_marks, max_pending_buckets=3)
    for minute in range(4):  # 3 buckets each: the first fills the bound
        writer.submit(journaled_batch(journal, [600 + minute], at=MINUTE + 60 * minute + 1.0))
    while not writer.write_pending():
        pass
    assert writer.dropped_samples == 0 and writer.forgotten_samples > 0
    assert stored_soil() == (4, 600 + 601 + 602 + 603)
