"""The writer thread: stores drained batches off the ingest path.

No Django import: it calls a `store(batch) -> rows` function (sensors.storage.write_batch
in production). A batch that fails to store is kept and retried with exponential backoff,
so a locked or unreachable database delays writes but never blocks the listener.

Without a journal, batches that follow a failed one are merged into it (merging is exact,
see aggregator.Batch) up to `max_pending_buckets`. With a journal (journal.py), a batch
that was tried is never merged again: its marks let the retry skip what an ambiguous COMMIT
stored already. Once the journal holds a failed batch on disk, memory forgets it and the
batches after it; when the database answers again they are replayed from the journal
(replay.py), exactly once, before anything newer is written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from . import replay
from .aggregator import Batch
from .journal import Journal
from .replay import Bounds

logger = logging.getLogger(__name__)


class Writer:
    def __init__(
        self,
        store: Callable[[Batch], int],
        *,
        journal: Journal | None = None,
        load_marks: Callable[[str], dict[int, int]] | None = None,
        on_exit: Callable[[], None] | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        max_pending_buckets: int | None = None,
        outage_errors: tuple[type[Exception], ...] = (),
        replay_buckets: int = replay.MAX_REPLAY_BUCKETS,
    ) -> None:
        """`outage_errors` are what `store` raises when the database is away or busy (DatabaseError):
        logged in one line, as an expected condition; anything else is a bug and logged with its traceback.
        `load_marks(journal id)` reads the database's journal marks (minute -> seq) for a replay."""
        self.store = store
        self.journal = journal
        self.load_marks = load_marks
        self.replay_buckets = replay_buckets  # one replayed batch (one transaction) holds about this many
        self.outage_errors = outage_errors
        self.on_exit = on_exit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.rows_written = 0
        self.failed_attempts = 0
        self.max_pending_buckets = max_pending_buckets
        self.dropped_samples = 0  # over the pending bound during a long outage (no journal to hold them)
        self.replayed_batches = 0
        self.forgotten_samples = 0  # left to the journal during an outage
        self._queue: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self._pending: Batch | None = None  # the batch being stored
        self._attempted = False  # _pending was tried and failed
        self._waiting: Batch | None = None  # batches behind a tried one (journal on), merged
        self._catch_up: Bounds | None = None  # journal records to replay before anything newer
        self._replay: Iterator[Batch] | None = None
        self._replay_batch: Batch | None = None
        self._last_failed = False
        self._newest_submitted = 0
        self._finishing = threading.Event()
        self._finish_deadline = 0.0
        self._thread: threading.Thread | None = None

    # --- called from the ingest thread ----------------------------------------
    def submit(self, batch: Batch) -> None:
        if batch:
            self._newest_submitted = max(self._newest_submitted, batch.seq)
            self._queue.put(batch)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> int:
        """Write what is queued, waiting at most `timeout` s; return samples left unwritten.

        -1 means the write was still under way when time ran out (outcome unknown). With a
        journal, samples it holds are not counted: the next start replays them.
        """
        self._finish_deadline = time.monotonic() + timeout
        self._finishing.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                if self.journal is not None and self._left_to_journal():
                    logger.warning("writer did not finish within %.1f s; the journal holds its batches", timeout)
                    return 0
                logger.error("writer did not finish within %.1f s", timeout)
                return -1
        self._take_queued(block=None)
        left = [batch for batch in (self._pending, self._waiting) if batch is not None]
        if self.journal is not None:
            left = [batch for batch in left if not self.journal.covers(batch.seq)]
        return sum(batch.sample_count for batch in left)

    def _left_to_journal(self) -> bool:
        """Is everything not yet stored on the journal's disk? (Read while the thread is stuck in a write.)"""
        assert self.journal is not None
        return self.journal.covers(self._newest_submitted)  # every batch's records, up to the last one

    def replay_journal(self, through: int) -> None:
        """Replay the journal's records up to `through` (those of an earlier run) before anything newer."""
        if through > 0:
            self._catch_up = Bounds(through=through)
            self._replay = None

    @property
    def behind(self) -> bool:
        """Something is not in the database yet (in memory or left to the journal)."""
        return any(part is not None for part in (self._pending, self._waiting, self._catch_up))

    @property
    def catching_up(self) -> bool:
        return self._catch_up is not None

    @property
    def pending_buckets(self) -> int:
        """Buckets waiting for a successful write (read from another thread: approximate)."""
        return sum(len(batch.buckets) for batch in (self._pending, self._waiting) if batch is not None)

    # --- one step, called by the thread (and by tests) ------------------------
    def write_pending(self) -> bool:
        """One step: replay a chunk of the journal, or store what is queued; True if nothing is left.

        `last_failed` says whether the step failed (the thread then backs off).
        """
        self._last_failed = False
        self._take_queued(block=None)
        if self._catch_up is not None:
            if self._attempted or self.failed_attempts or self._bound_reached():
                self._leave_to_journal()  # in an outage (or near the bound) newer batches wait on disk too
            if not self._catch_up_step():
                return False
        return self._store_pending()

    @property
    def last_failed(self) -> bool:
        return self._last_failed

    # --- internals ---------------------------------------------------------------
    def _store_pending(self) -> bool:
        batch = self._pending
        if batch is None:
            return True
        if self.journal is not None:
            batch.keep_marks_from = self._keep_marks_from(batch)
        try:
            rows = self.store(batch)
        except Exception as exc:
            self._failed(exc, len(batch.buckets))
            self._attempted = True
            self._leave_to_journal()
            return False
        self._recovered()
        self.rows_written += rows
        if batch.complete and self.journal is not None and self._catch_up is None:
            self.journal.committed(batch.seq)
        self._pending, self._waiting, self._attempted = self._waiting, None, False
        return self._pending is None

    def _catch_up_step(self) -> bool:
        """Store the next replayed batch; True once the replay is done (the bounds reached)."""
        assert self._catch_up is not None and self.journal is not None
        try:
            if self._replay is None:
                marks = self.load_marks(self.journal.id) if self.load_marks is not None else {}
                records = self.journal.records(after=self.journal.committed_through)
                self._replay = replay.batches(records, self.journal.id, marks, self._catch_up, self.replay_buckets)
            if self._replay_batch is None:
                self._replay_batch = next(self._replay, None)
            if self._replay_batch is None:
                logger.info(
                    "journal %s: replay done (%d batches written from the journal so far; %d entries skipped "
                    "as the database already had them)",
                    self.journal.id,
                    self.replayed_batches,
                    self._catch_up.already_stored,
                )
                if self._catch_up.through:
                    self.journal.committed(self._catch_up.through)  # an earlier run's records: all stored now
                self._catch_up, self._replay = None, None
                return True
            batch = self._replay_batch
            batch.keep_marks_from = self._keep_marks_from(batch)
            rows = self.store(batch)
        except Exception as exc:
            self._failed(exc, len(self._replay_batch.buckets) if self._replay_batch is not None else 0)
            self._replay, self._replay_batch = None, None  # start again from the marks stored
            return False
        self._recovered()
        self._replay_batch = None
        self.replayed_batches += 1
        self.rows_written += rows
        return False

    def _forget(self, batch: Batch) -> None:
        """Leave one batch (on the journal's disk) to a replay, before anything newer is written."""
        bounds = self._catch_up or Bounds()
        bounds.extend(batch.marks)
        self.forgotten_samples += batch.sample_count
        self._catch_up, self._replay, self._replay_batch = bounds, None, None  # the replay starts over

    def _leave_to_journal(self) -> None:
        """Forget the failed batch and those behind it once the journal holds them all on disk."""
        held = [batch for batch in (self._pending, self._waiting) if batch is not None]
        if self.journal is None or not held or not self.journal.covers(max(batch.seq for batch in held)):
            return
        if self._catch_up is None:
            logger.warning(
                "journal %s: %d samples left to the journal until the database is back (memory stays small)",
                self.journal.id,
                sum(batch.sample_count for batch in held),
            )
        for batch in held:
            self._forget(batch)
        self._pending, self._waiting, self._attempted = None, None, False

    def _bound_reached(self) -> bool:
        return self.max_pending_buckets is not None and self.pending_buckets >= self.max_pending_buckets // 2

    def _keep_marks_from(self, batch: Batch) -> int:
        """Marks older than this minute are no longer needed: no record in the journal reaches back there."""
        assert self.journal is not None
        oldest = min(self.journal.oldest_timestamp(), min(batch.marks, default=float("inf")))
        return 0 if oldest == float("inf") else int(oldest // 60) * 60 - 3600

    def _failed(self, exc: Exception, buckets: int) -> None:
        self._last_failed = True
        self.failed_attempts += 1
        if self.failed_attempts == 1 and isinstance(exc, self.outage_errors):
            logger.error(
                "cannot write %d buckets; keeping them and retrying (%s: %s)", buckets, type(exc).__name__, exc
            )
        elif self.failed_attempts == 1:
            logger.exception("cannot write %d buckets; keeping them and retrying", buckets)
        else:
            logger.warning("write attempt %d failed; %d buckets pending", self.failed_attempts, buckets)

    def _recovered(self) -> None:
        if self.failed_attempts:
            logger.info("database writes recovered after %d failed attempts", self.failed_attempts)
        self.failed_attempts = 0

    def _take_queued(self, block: float | None) -> None:
        """Merge queued batches into the pending one (or, behind a tried one, the waiting one)."""
        try:
            batch = self._queue.get(timeout=block) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            if self._pending is None and self._waiting is None:
                self._pending = batch
            elif self._waiting is None and not (self._attempted and self.journal is not None):
                self._merge_into(self._pending, batch)
            elif self._waiting is None:
                self._waiting = batch
            else:
                self._merge_into(self._waiting, batch)
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return

    def _merge_into(self, target: Batch | None, batch: Batch) -> None:
        assert target is not None
        bound = self.max_pending_buckets
        if (
            self.journal is not None
            and bound is not None
            and len(target.buckets) + len(batch.buckets) > bound
            and self.journal.covers(batch.seq)
        ):
            self._forget(batch)  # on the journal's disk: replayed from there, never dropped
            return
        dropped = target.merge(batch, bound)
        if dropped:
            self.dropped_samples += dropped
            logger.error(
                "database still failing and %d buckets pending (the bound): dropped %d new samples",
                self.pending_buckets,
                dropped,
            )

    def _run(self) -> None:
        delay = 0.0
        try:
            while True:
                finishing = self._finishing.is_set()
                if not finishing and self._pending is None and self._catch_up is None:
                    self._take_queued(block=0.2)
                done = self.write_pending()
                if finishing and (done or time.monotonic() >= self._finish_deadline):
                    return
                if not self._last_failed:
                    delay = 0.0
                    continue
                delay = min(max(delay * 2, self.retry_initial), self.retry_max)
                if finishing:
                    delay = min(delay, max(0.0, self._finish_deadline - time.monotonic()))
                    time.sleep(delay)
                else:
                    self._finishing.wait(delay)  # a finish request cuts the wait short
        finally:
            if self.on_exit is not None:
                self.on_exit()
