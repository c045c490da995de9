"""Retention: minute rows older than MINUTE_RETENTION_DAYS are deleted; rollups are kept forever.

The same hourly thread then lays out the hourly rows of the days that closed (sensors.layout),
so a year's chart stays quick on PostgreSQL; it runs with the retention off too.

Deleting minutes loses no history: the collector merged every sample into the
hourly and daily rollups in the same transaction that wrote the minute (see
storage.py), so charts and exports of old ranges read the rollups instead.
Deletes go in small chunks so a big first purge never holds SQLite's write lock
for long while the collector is writing, and so a stop request is noticed
between two chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, connections

from .ingest.periodic import PeriodicThread
from .layout import clean_indexes, order_closed_days
from .models import Reading

logger = logging.getLogger(__name__)

PURGE_CHUNK = 5000
PURGE_INTERVAL_SECONDS = 3600.0


def _never() -> bool:
    return False


def purge_expired_minutes(
    keep_days: int,
    now: datetime | None = None,
    chunk: int = PURGE_CHUNK,
    stopping: Callable[[], bool] = _never,
) -> int:
    """Delete minute rows older than the retention period, `chunk` rows a transaction; return how many.

    Returns early, between two chunks, once `stopping()` is true: the rest goes at the next run.
    """
    cutoff = Reading.kept_since(keep_days, now)
    if cutoff is None:
        return 0
    deleted = 0
    while not stopping():
        ids = list(Reading.objects.filter(start__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            break
        deleted += Reading.objects.filter(id__in=ids).delete()[0]
    return deleted


class RetentionThread:
    """Runs the purge now and then every `interval` seconds, in a thread beside the collector's writer.

    The thread opens its own database connection and closes it after each run (an hourly
    job holds none in between) and when it ends.
    """

    def __init__(self, keep_days: int, interval: float = PURGE_INTERVAL_SECONDS, chunk: int = PURGE_CHUNK) -> None:
        self.keep_days = keep_days
        self.interval = interval
        self.chunk = chunk
        self._thread = PeriodicThread(
            "retention", self._scheduled_purge, interval, on_exit=connections.close_all, join_seconds=10
        )

    def purge_once(self) -> int:
        """One purge, in the caller's thread and connection (tests call it directly)."""
        try:
            deleted = purge_expired_minutes(self.keep_days, chunk=self.chunk, stopping=lambda: self._thread.stopping)
        except DatabaseError as exc:
            logger.warning("retention purge failed (%s); trying again in %gs", exc, self.interval)
            return 0
        if deleted:
            logger.info("retention: deleted %d minute rows older than %d days", deleted, self.keep_days)
        return deleted

    def order_once(self) -> int:
        """Lay out the closed days' hourly rows (sensors.layout) in the caller's thread; return the days done."""
        try:
            days, rows = order_closed_days(stopping=lambda: self._thread.stopping)
            if days:
                clean_indexes()
        except DatabaseError as exc:
            logger.warning("laying out closed days failed (%s); trying again in %gs", exc, self.interval)
            return 0
        if days:
            logger.info("layout: %d closed days' hourly rows (%d rows) rewritten in sensor order", days, rows)
        return days

    def _scheduled_purge(self) -> None:
        """The thread's action: a purge and the layout, then this thread's connection closed until the next run."""
        try:
            self.purge_once()
            self.order_once()
        finally:
            connections.close_all()

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._thread.request_stop()

    def stop(self) -> bool:
        return self._thread.stop()
