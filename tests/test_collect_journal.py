"""End to end: the journal of the real `manage.py collect` across SIGKILLs, outages and torn tails.

The collectors run with the default write intervals (the open minute every 30 s), so without
the journal a kill would lose up to 30 s of every board; with it, at most about the journal's
sync interval (1 s).
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from sensors.models import Reading
from tests.conftest import a_minute_ago
from tests.seed import assert_rollups_match_minutes
from tests.test_collect_command import connect

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
