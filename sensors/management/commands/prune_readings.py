"""python manage.py prune_readings: delete minute rows older than the retention period now.

The collector already does this every hour; this command is for a one-off run
(e.g. after lowering MINUTE_RETENTION_DAYS) or for cron when the collector is not used.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sensors.models import Reading
from sensors.retention import purge_expired_minutes


class Command(BaseCommand):
    help = "Delete minute readings older than MINUTE_RETENTION_DAYS (hourly and daily rollups are kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=settings.MINUTE_RETENTION_DAYS,
            help="keep this many days of minute rows (default: MINUTE_RETENTION_DAYS=%(default)s; 0 keeps all)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    def handle(self, *args, **options) -> None:
        days = options["days"]
        if days < 0:
            raise CommandError("--days must be 0 (keep forever) or a number of days")
        cutoff = Reading.kept_since(days)
        if cutoff is None:
            self.stdout.write("retention is off (0 days): nothing deleted")
            return
        if options["dry_run"]:
            count = Reading.objects.filter(start__lt=cutoff).count()
            self.stdout.write(f"would delete {count} minute rows before {cutoff:%Y-%m-%dT%H:%M:%SZ}")
            return
        deleted = purge_expired_minutes(days)
        self.stdout.write(f"deleted {deleted} minute rows before {cutoff:%Y-%m-%dT%H:%M:%SZ}")
