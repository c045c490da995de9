"""Retention: minute rows older than MINUTE_RETENTION_DAYS are deleted; rollups are kept forever.

Deleting minutes loses no history: the collector merged every sample into the
hourly and daily rollups in the same transaction that wrote the minute (see
storage.py), so charts and exports of old ranges read the rollups instead.
Deletes go in small chunks so a big first purge never holds SQLite's write lock
for long while the collector is writing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, connection

from .models import Reading
from .periodic import PeriodicThread

logger = logging.getLogger(__name__)

PURGE_CHUNK = 5000
PURGE_INTERVAL_SECONDS = 3600.0


def minutes_kept_since(keep_days: int, now: datetime | None = None) -> datetime | None:
    """The oldest minute that retention keeps (the start of that hour), or None when minutes are kept forever."""
    if keep_days <= 0:
        return None
    now = now or datetime.now(UTC)
    return (now - timedelta(days=keep_days)).replace(minute=0, second=0, microsecond=0)


def purge_expired_minutes(keep_days: int, now: datetime | None = None, chunk: int = PURGE_CHUNK) -> int:
    """Delete minute rows older than the retention period; return how many were deleted."""
    cutoff = minutes_kept_since(keep_days, now)
    if cutoff is None:
        return 0
    deleted = 0
    while True:
        ids = list(Reading.objects.filter(start__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += Reading.objects.filter(id__in=ids).delete()[0]


class RetentionThread:
    """Runs the purge now and then every `interval` seconds, beside the collector's writer."""

    def __init__(self, keep_days: int, interval: float = PURGE_INTERVAL_SECONDS) -> None:
        self.keep_days = keep_days
        self.interval = interval
        self._thread = PeriodicThread("retention", self.purge_once, interval, connection.close, join_seconds=10)

    def purge_once(self) -> int:
        try:
            deleted = purge_expired_minutes(self.keep_days)
        except DatabaseError as exc:
            logger.warning("retention purge failed (%s); trying again in %gs", exc, self.interval)
            connection.close()
            return 0
        if deleted:
            logger.info("retention: deleted %d minute rows older than %d days", deleted, self.keep_days)
        return deleted

    def start(self) -> None:
        if self.keep_days > 0:
            self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
