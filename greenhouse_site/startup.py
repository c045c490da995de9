"""Start-up checks shared by the long-running commands: process limits, a migrated database."""

from __future__ import annotations

import logging
import resource

from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)


def raise_file_limit(wanted: int) -> int:
    """Lift the soft open-files limit towards `wanted` (one socket per board); return the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        logger.warning(
            "open-files limit is %d, below the %d wanted; raise it (supervisor: minfds, shell: ulimit -n)",
            soft,
            wanted,
        )
    return soft


def require_migrated(log: logging.Logger, while_unreachable: str) -> None:
    """Refuse to start on an unmigrated database; start anyway, saying `while_unreachable`, if it is unreachable.

    The connection is closed afterwards: the command's threads open their own.
    """
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        log.warning("database unreachable at start (%s); %s", exc, while_unreachable)
        return
    finally:
        connection.close()
    if pending:
        raise CommandError("the database is not migrated: run `python manage.py migrate` first")
