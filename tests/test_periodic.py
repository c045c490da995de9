"""PeriodicThread (sensors.ingest.periodic) and the retention thread built on it: clean lifecycles."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from sensors.ingest.periodic import PeriodicThread
from sensors.models import Reading
from sensors.retention import RetentionThread
from sensors.storage import write_batch
from tests.peers import wait_until
from tests.test_rollups import MACS, batch_of


@pytest.fixture
def thread_errors(monkeypatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that escaped a thread (Python prints them as `Exception in thread ...`)."""
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    return escaped


def test_an_exception_from_the_action_is_logged_with_its_traceback_and_the_next_run_still_comes(caplog, thread_errors):
    runs = []

    def action() -> None:
        runs.append(threading.current_thread().name)
        if len(runs) == 1:
            raise RuntimeError("database is locked")

    job = PeriodicThread("flaky", action, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="sensors.ingest.periodic"):
        job.start()
        wait_until(lambda: len(runs) >= 3, what="runs after the failure")
        assert job.stop()
    assert runs[0] == "flaky"
    assert job.failures == 1
    [record] = [r for r in caplog.records if r.exc_info]
    assert "flaky failed" in record.getMessage() and "database is locked" in str(record.exc_info[1])
    assert thread_errors == []


def test_on_exit_runs_inside_the_thread_even_after_a_failing_action(thread_errors):
    exited_in = []
    job = PeriodicThread(
        "job", lambda: 1 / 0, interval=10, on_exit=lambda: exited_in.append(threading.current_thread())
    )
    job.start()
    assert job.stop()
    assert [thread.name for thread in exited_in] == ["job"]
    assert thread_errors == []


def test_a_long_action_sees_the_stop_request_between_chunks_and_stop_returns_promptly():
    chunks = []
    started = threading.Event()

    def long_action() -> None:
        started.set()
        while not job.stopping and len(chunks) < 10_000_000:
            chunks.append(1)

    job = PeriodicThread("purge", long_action, interval=3600, join_seconds=5)
    job.start()
    assert started.wait(5)
    assert job.stop() is True
    assert len(chunks) < 10_000_000


@pytest.mark.django_db(transaction=True)
def test_the_retention_thread_purges_on_its_own_connection_and_leaves_the_callers_alone(thread_errors, caplog):
    old = int((datetime.now(UTC) - timedelta(days=40)).timestamp())
    write_batch(batch_of([(MACS[0], "humidity", old + i * 60, 40.0) for i in range(30)]))
    assert connection.is_usable()  # this (main) thread's connection, open before the thread starts
    retention = RetentionThread(30, interval=3600, chunk=7)
    retention.start()
    wait_until(lambda: not Reading.objects.exists(), what="the purge")
    assert retention.stop()
    assert thread_errors == []  # closing a connection of another thread raises in the thread
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert connection.is_usable()
    assert Reading.objects.count() == 0
