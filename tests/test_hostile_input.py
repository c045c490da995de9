"""Hostile and broken input at socket level while a normal fleet reports: exact totals, bounded memory."""

from __future__ import annotations

import random
import resource
import socket
import threading
import time
from pathlib import Path

import pytest

from sensors.models import Sensor
from tests.test_collect_command import CLOCK, FAST, MINUTE, Expected, connect, exported, firmware_lines

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_CONNECTIONS = 1500


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def quietly(action) -> None:
    try:
        action()
    except OSError:  # the collector may close an abusive connection mid-write: that is the point
        pass


def test_collector_survives_hostile_input_with_bounded_memory_and_exact_totals(start_collector):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    collector = start_collector(*FAST, *CLOCK)
    pid = collector.process.pid
    baseline = rss_kib(pid)
    expected = Expected()
    stop = threading.Event()

    def fleet() -> None:
        sockets = [connect(collector.port) for _ in range(3)]
        seed = 0
        while not stop.is_set():
            for index, sock in enumerate(sockets):
                seed += 1
                sock.sendall(b"".join(firmware_lines(f"5c:cf:7f:00:00:0{index}", 2, seed=seed, expected=expected)))
            time.sleep(0.2)
        for sock in sockets:
            sock.close()

    reporter = threading.Thread(target=fleet)
    reporter.start()
    rng = random.Random(1)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", collector.port)) for _ in range(IDLE_CONNECTIONS)]  # slowloris
        for _ in range(200):  # connect / close loops
            socket.create_connection(("127.0.0.1", collector.port)).close()
        with connect(collector.port) as noise:  # random bytes, with newlines in them
            quietly(lambda: noise.sendall(rng.randbytes(1_000_000)))
        for _ in range(3):  # megabytes without a newline
            with connect(collector.port) as flood:
                quietly(lambda flood=flood: flood.sendall(b"A" * 4_000_000))
        with connect(collector.port) as hostile:
            hostile.sendall(
                b"\xc3\x28\xa0\xa1 invalid utf-8\n"
                b"Soil: nan; temp: inf; hum: -nan; from 5c:cf:7f:66:66:66\n"
                b"Soil: 1e999; from 5c:cf:7f:66:66:66\n"
                b"'; DROP TABLE sensors_reading; --: 1; from 5c:cf:7f:66:66:66\n"
                b"Soil: 1; from 5c:cf:7f:00:00:00'); DELETE FROM sensors_sensor; --\n"
                b"Robert'); DROP TABLE sensors_sensor;--: 5; temp: abc; from 5c:cf:7f:66:66:66\n"
            )
        time.sleep(1)
        peak = rss_kib(pid)
        assert collector.process.poll() is None, collector.output
    finally:
        stop.set()
        reporter.join(10)
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    assert collector.stop() == 0, collector.output[-3000:]
    assert exported() == expected.rows(MINUTE)
    assert sorted(Sensor.objects.values_list("device_id", flat=True)) == [f"5c:cf:7f:00:00:0{i}" for i in range(3)]
    # 1,500 open connections and ~13 MB of garbage may cost a few MB, not a copy of the input.
    assert peak - baseline < 40_000, f"RSS grew from {baseline} KiB to {peak} KiB"
    print(f"collector RSS {baseline} KiB at start, {peak} KiB under attack")
