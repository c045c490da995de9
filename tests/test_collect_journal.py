"""End to end: the journal of the real `manage.py collect` across SIGKILLs, outages and torn tails.

The collectors run with the default write intervals (the open minute every 30 s), so without
the journal a kill would lose up to 30 s of every board; with it, at most about the journal's
sync interval (1 s).
"""

from __future__ import annotations

import random
import re
import threading
import time

import pytest
from django.db import connection

from sensors.models import Reading
from tests.conftest import a_minute_ago, manage_env
from tests.peers import wait_until
from tests.seed import assert_rollups_match_minutes, one_sample
from tests.test_collect_command import CLOCK, FAST, MINUTE, Expected, connect, exported, firmware_lines
from tests.test_database_trouble import database_locked

pytestmark = pytest.mark.django_db(transaction=True)

STATS = ("--stats-interval", "3600")
SYNC = 1.0  # COLLECTOR_JOURNAL_SYNC_INTERVAL's default
MARGIN = 0.3  # a line is read and the record fsynced within milliseconds; this covers a loaded machine


class Boards(threading.Thread):
    """Boards that each send a line every `period` s and reconnect whenever the collector is gone.

    `sent` holds the time of each line handed to a connected socket: an upper bound of what can
    be stored (a line still in the socket buffer when the collector dies is lost with it)."""

    def __init__(self, port: int, count: int = 5, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.period = period
        self.sent: list[float] = []
        self.stopping = threading.Event()
        self._sockets: dict[int, object] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            for board in range(self.count):
                line = f"Soil: {500 + board}; temp: 20; hum: 50; from 5c:cf:7f:00:10:{board:02x}\n".encode()
                sock = self._sockets.get(board)
                try:
                    if sock is None:
                        sock = self._sockets[board] = connect(self.port)
                    sock.sendall(line)  # type: ignore[attr-defined]
                    self.sent.append(time.monotonic())
                except OSError:
                    if sock is not None:
                        sock.close()  # type: ignore[attr-defined]
                    self._sockets.pop(board, None)
            self.stopping.wait(self.period)
        for sock in self._sockets.values():
            sock.close()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def stored_samples() -> int:
    """Samples stored, counted by soil readings (every line has one)."""
    return sum(Reading.objects.filter(metric="soil_moisture").values_list("samples", flat=True))


def test_sigkill_at_random_moments_loses_at_most_about_the_sync_interval_and_never_doubles(start_collector):
    rng = random.Random(13)
    clock = ("--test-clock-start", repr(a_minute_ago()))
    collector = start_collector(*STATS, *clock)
    boards = Boards(collector.port)
    boards.start()
    windows: list[tuple[float, float]] = []  # (from, to): lines sent then may be lost
    try:
        for _ in range(20):
            time.sleep(rng.uniform(1.0, 4.0))
            killed = time.monotonic()
            collector.process.kill()
            collector.process.wait(10)
            collector.assert_no_traceback()
            collector = start_collector(*STATS, *clock)
            boards.port = collector.port
            windows.append((killed - SYNC - MARGIN, time.monotonic()))
        time.sleep(1.0)
    finally:
        boards.stop()
    assert collector.stop() == 0
    sent = len(boards.sent)
    at_risk = sum(1 for moment in boards.sent if any(start <= moment <= end for start, end in windows))
    stored = stored_samples()
    assert sent - at_risk <= stored <= sent, f"sent {sent}, at risk {at_risk}, stored {stored}"
    assert at_risk < 0.75 * sent  # the bound means something: many lines were outside the windows
    lost_seconds = (sent - stored) / 20 / (boards.count / boards.period)
    print(f"sent {sent}, at risk {at_risk}, stored {stored}: about {lost_seconds:.2f} s of lines lost per kill")
    assert "replaying records" in collector.output
    assert_rollups_match_minutes()


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_a_collector_stopped_during_an_outage_writes_everything_once_after_the_restart(start_collector, how):
    """SQLite locked by another process (PostgreSQL: the readings table locked), then the collector
    killed or stopped; with the database back, the restart replays the journal before it listens."""
    collector = start_collector(*FAST, *CLOCK, env=manage_env(SQLITE_BUSY_TIMEOUT="0.5"))
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:01", 3, seed=1, expected=expected)))
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=10, what="the first write")
        with database_locked():
            for round_ in range(6):
                sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:01", 3, seed=10 + round_, expected=expected)))
                time.sleep(0.5)
            time.sleep(SYNC + MARGIN)  # on the journal's disk by now
            if how == "sigkill":
                collector.process.kill()
            else:
                collector.process.terminate()
            collector.process.wait(30)
            collector.assert_no_traceback()
    if connection.vendor == "sqlite":  # SQLite fails the writes (PostgreSQL waits for the lock)
        assert "samples left to the journal until the database is back" in collector.output
    if how == "sigterm":
        assert collector.process.returncode == 0, collector.output
        assert "the journal" in collector.output and "next start writes it" in collector.output
    second = start_collector(*FAST, *CLOCK)
    assert exported() == expected.rows(MINUTE)  # written before it listened
    assert "replaying records" in second.output
    assert second.stop() == 0
    assert exported() == expected.rows(MINUTE)  # and once only
    assert_rollups_match_minutes()


@pytest.mark.postgres
def test_a_collector_killed_while_postgresql_is_cut_off_writes_everything_once_after_the_restart(
    start_collector, postgres_proxy
):
    proxy, url = postgres_proxy
    collector = start_collector(*FAST, *CLOCK, env=manage_env(DATABASE_URL=url))
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:02", 3, seed=1, expected=expected)))
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=10, what="the first write")
        proxy.cut()
        for round_ in range(6):
            sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:02", 3, seed=10 + round_, expected=expected)))
            time.sleep(0.5)
        time.sleep(SYNC + MARGIN)
        collector.process.kill()
        collector.process.wait(10)
    proxy.restore()
    second = start_collector(*FAST, *CLOCK, env=manage_env(DATABASE_URL=url))
    assert exported() == expected.rows(MINUTE)
    assert second.stop() == 0
    assert exported() == expected.rows(MINUTE)


def test_a_torn_last_record_is_cut_with_one_log_line_and_the_records_before_it_replayed(start_collector, journal_dir):
    collector = start_collector(*STATS, *CLOCK)
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:03", 5, seed=3, expected=expected)))
        time.sleep(SYNC + MARGIN)
        collector.process.kill()
        collector.process.wait(10)
    (segment,) = sorted(journal_dir.glob("*/*.seg"))[-1:]
    with open(segment, "ab") as file:  # the power went while the next record was being written
        file.write(b"GHJ1\x07\x00\x00\x00\x00\x00\x00\x00\xff\x00")
    second = start_collector(*STATS, *CLOCK)
    assert exported() == expected.rows(MINUTE)
    assert second.output.count("cut a torn or damaged record") == 1
    assert second.stop() == 0


def test_an_unusable_journal_directory_is_a_logged_error_and_ingest_goes_on(start_collector):
    collector = start_collector(*FAST, *CLOCK, env=manage_env(COLLECTOR_JOURNAL_DIR="/dev/null/journal"))
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:04", 4, seed=4, expected=expected)))
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=10, what="the write")
    assert "running without a journal" in collector.output
    assert collector.stop() == 0


# --- a kill during the replay ------------------------------------------------------------------
def journal_of_hours(journal_dir, sensors: int, minutes: int) -> dict[tuple[str, str, int], list[int]]:
    """A journal left by a collector that never reached the database: `minutes` minutes of
    `sensors` boards (two lines a minute each), ending an hour ago. Returns the samples by
    (mac, metric, minute start)."""
    from sensors.ingest.journal import RAW, Journal, Record

    journal, _ = Journal.open(journal_dir)
    first = (time.time() // 60) * 60 - 3600 - 60 * minutes
    samples: dict[tuple[str, str, int], list[int]] = {}
    records = []
    rng = random.Random(5)
    for index in range(minutes):
        minute = int(first + 60 * index)
        entries = []
        for board in range(sensors):
            mac = f"5c:cf:7f:00:30:{board:02x}"
            block = b""
            for _ in range(2):
                soil, temp, hum = rng.randint(200, 900), rng.randint(5, 35), rng.randint(30, 90)
                block += f"Soil: {soil}; temp: {temp}; hum: {hum}; from {mac}\n".encode()
                for metric, value in (("soil_moisture", soil), ("air_temperature", temp), ("humidity", hum)):
                    samples.setdefault((mac, metric, minute), []).append(value)
            entries.append((minute + 1.0 + board / 100, "192.0.2.9", block, RAW))
        records.append(Record(index + 1, entries))
    journal.write_records(records)
    journal.stop()
    return samples


def stored_minutes() -> dict[tuple[str, str, int], tuple[int, float, float, float]]:
    rows = Reading.objects.values_list(
        "sensor__device_id", "metric", "start", "samples", "value_sum", "value_min", "value_max"
    )
    return {
        (mac, metric, int(start.timestamp())): (n, total, low, high) for mac, metric, start, n, total, low, high in rows
    }


def test_a_kill_during_the_replay_then_a_restart_stores_everything_once(start_collector, journal_dir):
    samples = journal_of_hours(journal_dir, sensors=20, minutes=300)
    expected = {key: (len(v), float(sum(v)), float(min(v)), float(max(v))) for key, v in samples.items()}
    replay_env = manage_env(COLLECTOR_JOURNAL_REPLAY_BUCKETS="2000")  # 18,000 buckets: 9 transactions
    first = CollectorStarting(replay_env)
    wait_until(lambda: Reading.objects.exists(), timeout=30, what="the replay's first transaction")
    first.process.kill()
    first.process.wait(10)
    partial = stored_minutes()
    assert 0 < len(partial) < len(expected)  # killed in the middle of the replay
    second = start_collector(*STATS, env=replay_env)
    assert stored_minutes() == expected  # replayed before it listened: the rest, and only the rest
    assert second.stop() == 0
    assert_rollups_match_minutes()


class CollectorStarting:
    """`manage.py collect` started without waiting for it to listen (it may be killed before)."""

    def __init__(self, env: dict[str, str]) -> None:
        import subprocess
        import sys

        from harness.processes import ROOT

        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "collect", "--host", "127.0.0.1", "--port", "0", *STATS],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# --- a COMMIT whose answer is lost ----------------------------------------------------------------
@pytest.mark.postgres
def test_a_commit_cut_off_by_the_proxy_before_its_answer_is_not_counted_twice(start_collector, postgres_proxy):
    proxy, url = postgres_proxy
    collector = start_collector(*FAST, *CLOCK, env=manage_env(DATABASE_URL=url))
    expected = Expected()
    proxy.cut_after_sending(b"Q\x00\x00\x00\x0bCOMMIT\x00")  # psycopg's COMMIT, as a simple query
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:05", 4, seed=5, expected=expected)))
        wait_until(lambda: proxy.cuts_after == 1, timeout=10, what="the cut after COMMIT")
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=15, what="the retried write")
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:20:05", 2, seed=6, expected=expected)))
        wait_until(lambda: exported() == expected.rows(MINUTE), timeout=15, what="the next write")
    assert collector.stop() == 0
    assert exported() == expected.rows(MINUTE)
    # The COMMIT had gone through: the retry from memory, or the replay, skipped what it stored.
    skipped = [int(n) for n in re.findall(r"(\d+) entries skipped as the database already had them", collector.output)]
    assert "were stored by an earlier attempt" in collector.output or max(skipped, default=0) > 0


# --- a journal that fills up ------------------------------------------------------------------------
def test_a_journal_that_fills_up_during_an_outage_counts_and_logs_the_drop_and_keeps_going(start_collector):
    env = manage_env(SQLITE_BUSY_TIMEOUT="0.5", COLLECTOR_JOURNAL_MAX_BYTES=str(1 << 20))
    collector = start_collector(*FAST, *CLOCK, env=env)
    expected = Expected()
    rng = random.Random(7)
    with connect(collector.port) as sock, database_locked():
        for _ in range(40):  # ~2 MB of journal: random values compress poorly
            lines = []
            for _ in range(4000):
                mac = f"5c:cf:7f:00:40:{rng.randrange(8):02x}"
                soil, temp, hum = rng.randint(0, 1000), rng.randint(-20, 45), rng.randint(0, 100)
                lines.append(f"Soil: {soil}; temp: {temp}; hum: {hum}; from {mac}\n".encode())
                expected.add(mac, soil_moisture=soil, air_temperature=temp, humidity=hum)
            sock.sendall(b"".join(lines))
            time.sleep(0.3)
        wait_until(lambda: "the journal is full" in collector.output, timeout=10, what="the journal filling up")
    wait_until(lambda: exported() == expected.rows(MINUTE), timeout=30, what="the write after the outage")
    assert collector.stop() == 0
    assert "records not journaled" in collector.output
    not_journaled = [int(m) for m in re.findall(r"(\d+) records not journaled", collector.output)]
    assert max(not_journaled) > 0  # counted in the stats line


# --- a purge under way when the stop comes ----------------------------------------------------------
def test_a_stop_during_a_long_purge_exits_promptly_and_loses_nothing(start_collector):
    """Months of minutes past the retention, purged 5,000 rows a statement: a SIGTERM in the middle
    ends the purge between two statements, writes everything and exits 0 well within supervisor's
    stopwaitsecs (20 s); the rest of the purge is left for the next run."""
    from datetime import UTC, datetime, timedelta

    from sensors.models import Sensor

    old = Sensor.objects.create(device_id="5c:cf:7f:00:50:01")
    first = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=120)
    Reading.objects.bulk_create(
        (one_sample(old, "soil_moisture", first + timedelta(minutes=i), 1.0) for i in range(150_000)),
        batch_size=5000,
    )
    collector = start_collector(*FAST, *CLOCK)
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:50:02", 4, seed=8, expected=expected)))
        time.sleep(0.3)
        asked = time.monotonic()
        collector.process.terminate()
        collector.process.wait(30)
    took = time.monotonic() - asked
    assert collector.process.returncode == 0, collector.output
    assert took < 10, f"stopped after {took:.1f} s"
    left = Reading.objects.filter(sensor=old).count()
    assert 0 < left < 150_000  # the purge had begun and was cut short, not waited for
    Reading.objects.filter(sensor=old).delete()
    assert exported() == expected.rows(MINUTE)
