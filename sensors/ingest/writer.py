"""The writer thread: stores drained batches off the ingest path.

No Django import: it calls a `store(batch) -> rows` function (sensors.storage.write_batch
in production). A batch that fails to store is kept and merged with the batches
that follow, then retried with exponential backoff, so a locked or unreachable
database delays writes but neither blocks the listener nor loses or doubles a
sample (merging is exact, see aggregator.Batch).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from .aggregator import Batch

logger = logging.getLogger(__name__)


class Writer:
    def __init__(
        self,
        store: Callable[[Batch], int],
        *,
        on_exit: Callable[[], None] | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        max_pending_buckets: int | None = None,
        outage_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        """`outage_errors` are what `store` raises when the database is away or busy (DatabaseError):
        logged in one line, as an expected condition; anything else is a bug and logged with its traceback."""
        self.store = store
        self.outage_errors = outage_errors
        self.on_exit = on_exit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.rows_written = 0
        self.failed_attempts = 0
        self.max_pending_buckets = max_pending_buckets
        self.dropped_samples = 0  # over the pending bound during a long outage
        self._queue: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self._pending: Batch | None = None
        self._finishing = threading.Event()
        self._finish_deadline = 0.0
        self._thread: threading.Thread | None = None

    # --- called from the ingest thread ----------------------------------------
    def submit(self, batch: Batch) -> None:
        if batch:
            self._queue.put(batch)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector-writer", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> int:
        """Write what is queued, waiting at most `timeout` s; return samples left unwritten.

        -1 means the write was still under way when time ran out (outcome unknown).
        """
        self._finish_deadline = time.monotonic() + timeout
        self._finishing.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                logger.error("writer did not finish within %.1f s", timeout)
                return -1
        self._take_queued(block=None)
        return self._pending.sample_count if self._pending is not None else 0

    @property
    def pending_buckets(self) -> int:
        """Buckets waiting for a successful write (read from another thread: approximate)."""
        pending = self._pending
        return len(pending.buckets) if pending is not None else 0

    # --- one step, called by the thread (and by tests) ------------------------
    def write_pending(self) -> bool:
        """Try to store everything queued so far; True if nothing is left pending."""
        self._take_queued(block=None)
        if self._pending is None:
            return True
        try:
            rows = self.store(self._pending)
        except Exception as exc:
            self.failed_attempts += 1
            if self.failed_attempts == 1 and isinstance(exc, self.outage_errors):
                logger.error(
                    "cannot write %d buckets; keeping them and retrying (%s: %s)",
                    len(self._pending.buckets),
                    type(exc).__name__,
                    exc,
                )
            elif self.failed_attempts == 1:
                logger.exception("cannot write %d buckets; keeping them and retrying", len(self._pending.buckets))
            else:
                logger.warning(
                    "write attempt %d failed; %d buckets pending", self.failed_attempts, len(self._pending.buckets)
                )
            return False
        if self.failed_attempts:
            logger.info("database writes recovered after %d failed attempts", self.failed_attempts)
        self.failed_attempts = 0
        self.rows_written += rows
        self._pending = None
        return True

    # --- internals ---------------------------------------------------------------
    def _take_queued(self, block: float | None) -> None:
        """Merge queued batches into the pending one; wait up to `block` s for the first."""
        try:
            batch = self._queue.get(timeout=block) if block else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            if self._pending is None:
                self._pending = batch
            else:
                dropped = self._pending.merge(batch, self.max_pending_buckets)
                if dropped:
                    self.dropped_samples += dropped
                    logger.error(
                        "database still failing and %d buckets pending (the bound): dropped %d new samples",
                        len(self._pending.buckets),
                        dropped,
                    )
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return

    def _run(self) -> None:
        delay = 0.0
        try:
            while True:
                finishing = self._finishing.is_set()
                if not finishing and self._pending is None:
                    self._take_queued(block=0.2)
                ok = self.write_pending()
                if finishing and (ok or time.monotonic() >= self._finish_deadline):
                    return
                if ok:
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
