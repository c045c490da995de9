"""A locked database delays writes but loses nothing: the collector keeps reading and retries."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import psycopg
import pytest
from django.db import connection

from tests.conftest import database_url, manage_env
from tests.peers import wait_until
from tests.seed import assert_rollups_match_minutes
from tests.test_collect_command import CLOCK, FAST, MINUTE, Expected, connect, exported, firmware_lines

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def database_locked():
    """Another process holds the write lock (SQLite: on the whole file; PostgreSQL: on the readings table)."""
    if connection.vendor == "sqlite":
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    else:
        holder = psycopg.connect(database_url().replace("postgres://", "postgresql://", 1))
        holder.execute("LOCK TABLE sensors_reading IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def test_samples_received_while_the_database_is_locked_are_written_once_it_is_free(start_collector):
    # SQLite gives up on a lock after its busy timeout: 0.5 s here, so a 3 s lock fails several writes.
    collector = start_collector(*FAST, *CLOCK, env=manage_env(SQLITE_BUSY_TIMEOUT="0.5"))
    expected = Expected()
    with connect(collector.port) as first:
        with database_locked():
            for round_ in range(6):  # ~3 s of reports while nothing can be written
                first.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:01", 3, seed=round_, expected=expected)))
                time.sleep(0.5)
            # Ingest is not blocked by the writer: a new board still gets in and is read.
            with connect(collector.port) as second:
                second.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:02", 4, seed=50, expected=expected)))
                time.sleep(0.3)
        first.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:01", 3, seed=99, expected=expected)))
        # Written while still running (the retry did it), within the back-off of a few seconds:
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=20, what="the retried write")
    assert collector.stop() == 0
    assert_rollups_match_minutes()  # the late flush reached the hours and days too
    if connection.vendor == "sqlite":  # SQLite gives up after its busy timeout; PostgreSQL just waits
        assert "keeping them and retrying" in collector.output
        assert "database writes recovered" in collector.output


@pytest.mark.postgres
def test_postgresql_going_away_and_coming_back_loses_nothing(start_collector, postgres_proxy):
    proxy, url = postgres_proxy
    collector = start_collector(*FAST, *CLOCK, env=manage_env(DATABASE_URL=url))
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:01", 3, seed=1, expected=expected)))
        time.sleep(1)
        proxy.cut()  # PostgreSQL "stops"
        for round_ in range(6):
            sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:01", 3, seed=10 + round_, expected=expected)))
            time.sleep(1)
        proxy.restore()  # ... and is back
        time.sleep(4)  # the backoff reaches at most 4 s by now
    assert exported() == expected.rows(MINUTE)
    assert collector.stop() == 0
    assert "keeping them and retrying" in collector.output
    assert "database writes recovered" in collector.output
