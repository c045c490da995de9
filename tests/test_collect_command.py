"""End to end: the real `manage.py collect` process, real sockets, then `export_readings`.

Values are integers so sums, and so means, are exact and can be compared as text.
"""

from __future__ import annotations

import csv
import io
import random
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from django.core.management import call_command

from harness.processes import ROOT
from sensors.models import Sensor
from tests.conftest import a_minute_ago, manage_env, minute_text
from tests.seed import assert_rollups_match_minutes

pytestmark = pytest.mark.django_db(transaction=True)

# The open minute written every 0.3 s too, so that tests can see rows while the collector runs.
FAST = ("--flush-interval", "0.3", "--open-minute-interval", "0.3", "--stats-interval", "3600")
# Tests that compare whole minute rows start their collectors on a clock one second into a known
# minute, so every sample they send falls in that minute whatever the wall clock says.
START = a_minute_ago()
CLOCK = ("--test-clock-start", repr(START))
MINUTE = minute_text(START)


class Expected:
    """Samples a test sent, per (sensor, metric), to compare with the export."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, mac: str, **values: float) -> None:
        for metric, value in values.items():
            self.values[(mac, metric)].append(value)

    def rows(self, minute: str) -> dict[tuple[str, str], dict[str, str]]:
        return {
            key: {
                "start": minute,
                "samples": str(len(values)),
                "mean": repr(float(sum(values)) / len(values)),
                "min": repr(float(min(values))),
                "max": repr(float(max(values))),
            }
            for key, values in self.values.items()
        }


def exported() -> dict[tuple[str, str], dict[str, str]]:
    out = io.StringIO()
    call_command("export_readings", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    keys = [(row["sensor"], row["metric"]) for row in rows]
    assert len(keys) == len(set(keys)), "one row per sensor, metric and minute"
    return {
        (row["sensor"], row["metric"]): {field: row[field] for field in ("start", "samples", "mean", "min", "max")}
        for row in rows
    }


def firmware_lines(mac: str, count: int, seed: int, expected: Expected) -> list[bytes]:
    """Lines exactly as the firmware writes them, with drifting integer values."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        soil, temp, hum = rng.randint(200, 900), rng.randint(5, 35), rng.randint(30, 90)
        lines.append(f"Soil: {soil}; temp: {temp}; hum: {hum}; from {mac}\n".encode())
        expected.add(mac, soil_moisture=soil, air_temperature=temp, humidity=hum)
    return lines


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def send_in_random_pieces(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    position = 0
    while position < len(data):
        size = rng.randint(1, 40)
        sock.sendall(data[position : position + size])
        position += size
        if rng.random() < 0.2:
            time.sleep(0.002)


def send_byte_by_byte(sock: socket.socket, data: bytes) -> None:
    for index in range(len(data)):
        sock.sendall(data[index : index + 1])
        if index % 16 == 0:
            time.sleep(0.001)


def assert_closed_by_server(sock: socket.socket) -> None:
    sock.settimeout(8)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:  # closed with our unread bytes in its buffer: RST, not FIN
        pass


def stats_line(output: str) -> str:
    return [line for line in output.splitlines() if "stats:" in line][-1]


def test_every_good_sample_is_stored_once_whatever_the_framing(start_collector):
    collector = start_collector(*FAST, *CLOCK)
    expected = Expected()
    rng = random.Random(7)

    # Board A: firmware lines split at random byte boundaries, bad lines mixed in.
    a = "5c:cf:7f:0a:1b:2c"
    bad_lines = [
        b"Soil: 612; temp: 21; hum: 48\n",  # no identity
        b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b\n",  # not a MAC
        b"temp: nan; hum: inf; from 5c:cf:7f:0a:1b:2c\n",  # nothing finite
        b"Soil: abc; from 5c:cf:7f:0a:1b:2c\n",
        b"Soil: ; from 5c:cf:7f:0a:1b:2c\n",
        b"hum: 101; from 5c:cf:7f:0a:1b:2c\n",
        b"temp: -61; from 5c:cf:7f:0a:1b:2c\n",
        b"Soil: -3; from 5c:cf:7f:0a:1b:2c\n",
        b"Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c \xff\xfe\n",  # invalid UTF-8
        b"\n",
        b"   \r\n",  # empty lines: ignored silently
    ]
    stream_a = firmware_lines(a, 40, seed=1, expected=expected)
    for index, bad in enumerate(bad_lines):
        stream_a.insert(index * 3 + 1, bad)
    # A line with identity and one bad field keeps its good fields.
    stream_a.append(b"Soil: 500; temp: nan; hum: 60; from 5c:cf:7f:0a:1b:2c\n")
    expected.add(a, soil_moisture=500, humidity=60)

    # Board B: byte by byte. Board C: all lines in one write, tolerated variations included.
    b = "5c:cf:7f:00:00:0b"
    stream_b = firmware_lines(b, 8, seed=2, expected=expected)
    c = "5c:cf:7f:00:00:0c"
    stream_c = firmware_lines(c, 30, seed=3, expected=expected)
    stream_c += [
        b"  soil : 400 ;TEMP:22.0;  Hum :50 ; FROM: 5C-CF-7F-00-00-0C \r\n",
        b"from 5ccf7f00000c; hum: 52; light: 340; temp: 20\n",
    ]
    expected.add(c, soil_moisture=400, air_temperature=22, humidity=50)
    expected.add(c, humidity=52, light=340, air_temperature=20)

    with connect(collector.port) as sock_a, connect(collector.port) as sock_b, connect(collector.port) as sock_c:
        send_in_random_pieces(sock_a, b"".join(stream_a), rng)
        send_byte_by_byte(sock_b, b"".join(stream_b))
        sock_c.sendall(b"".join(stream_c) + b"Soil: 1; from 5c:cf:7f:00:00:0c")  # incomplete at close
    time.sleep(0.3)

    started = time.monotonic()
    assert collector.stop() == 0, collector.output
    assert time.monotonic() - started < 10
    assert exported() == expected.rows(MINUTE)

    stats = stats_line(collector.output)
    assert "invalid_encoding=1" in stats
    assert "missing_identity=1" in stats
    assert "invalid_mac=1" in stats
    assert "not_finite=1" in stats  # nan line
    assert "not_a_number=2" in stats  # abc and empty
    assert "out_of_range=3" in stats
    assert "incomplete_line=1" in stats
    assert "rejected fields: not_finite=1" in stats  # the nan next to good fields
    assert "rejected line from 127.0.0.1 (invalid_mac)" in collector.output


def test_sensor_is_registered_on_first_line_with_its_address(start_collector):
    collector = start_collector(*FAST)
    with connect(collector.port) as sock:
        sock.sendall(b"Soil: 612; temp: 21; hum: 48; from 5C:CF:7F:0A:1B:2C\n")
        time.sleep(0.3)
    assert collector.stop() == 0
    sensor = Sensor.objects.get()
    assert sensor.device_id == "5c:cf:7f:0a:1b:2c"
    assert sensor.last_peer == "127.0.0.1"
    assert sensor.first_seen is not None and sensor.first_seen == sensor.last_seen
    assert str(sensor) == "5c:cf:7f:0a:1b:2c"  # never named: shown by its MAC


def test_line_over_1kib_closes_that_connection_but_keeps_the_lines_before_it(start_collector):
    collector = start_collector(*FAST, *CLOCK)
    expected = Expected()
    good = firmware_lines("5c:cf:7f:00:00:01", 3, seed=4, expected=expected)
    after = firmware_lines("5c:cf:7f:00:00:01", 1, seed=5, expected=Expected())  # never stored
    other = firmware_lines("5c:cf:7f:00:00:02", 5, seed=6, expected=expected)
    with connect(collector.port) as flood, connect(collector.port) as neighbour:
        flood.sendall(b"".join(good) + b"x" * 1025 + b"\n" + b"".join(after))
        assert_closed_by_server(flood)
        neighbour.sendall(b"".join(other))
    time.sleep(0.3)
    assert collector.stop() == 0
    assert exported() == expected.rows(MINUTE)
    assert "line_too_long=1" in stats_line(collector.output)


def test_restart_in_the_same_minute_adds_to_the_stored_rows(start_collector):
    expected = Expected()
    for run in range(2):
        collector = start_collector(*FAST, *CLOCK)
        with connect(collector.port) as sock:
            sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:0a", 10, seed=run, expected=expected)))
            time.sleep(0.3)
        assert collector.stop() == 0, collector.output
    assert exported() == expected.rows(MINUTE)
    assert_rollups_match_minutes()


def test_two_collectors_on_one_database_merge_exactly(start_collector):
    expected = Expected()
    first, second = start_collector(*FAST, *CLOCK), start_collector(*FAST, *CLOCK)
    shared = ["5c:cf:7f:00:01:00", "5c:cf:7f:00:01:01", "5c:cf:7f:00:01:02"]
    sockets = [connect(collector.port) for collector in (first, second) for _ in shared]
    try:
        # Every shared sensor reports to both collectors; flushes interleave for ~2 s.
        for round_ in range(8):
            for index, sock in enumerate(sockets):
                mac = shared[index % len(shared)]
                sock.sendall(b"".join(firmware_lines(mac, 5, seed=round_ * 100 + index, expected=expected)))
            time.sleep(0.25)
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.3)
    assert first.stop() == 0, first.output
    assert second.stop() == 0, second.output
    assert exported() == expected.rows(MINUTE)
    assert_rollups_match_minutes()


def test_collectors_started_with_reuse_port_share_one_port_and_store_every_sample(start_collector):
    """Two collector processes on one port (one per core): the kernel spreads the boards over them."""
    expected = Expected()
    first = start_collector("--reuse-port", *FAST, *CLOCK)
    second = start_collector("--reuse-port", *FAST, *CLOCK, "--port", str(first.port))
    assert second.port == first.port
    assert "port shared with other collectors" in first.output
    macs = [f"5c:cf:7f:00:02:{index:02x}" for index in range(24)]
    sockets = [connect(first.port) for _ in macs]
    try:
        for round_ in range(3):
            for index, (mac, sock) in enumerate(zip(macs, sockets, strict=True)):
                sock.sendall(b"".join(firmware_lines(mac, 5, seed=round_ * 100 + index, expected=expected)))
            time.sleep(0.2)
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.3)
    assert first.stop() == 0, first.output
    assert second.stop() == 0, second.output
    opened = [int(re.search(r"connections opened (\d+)", stats_line(c.output)).group(1)) for c in (first, second)]
    assert sum(opened) == len(macs)
    assert min(opened) > 0, opened  # all 24 on one of the two: a chance of 2 in 2**24
    assert exported() == expected.rows(MINUTE)
    assert_rollups_match_minutes()


def test_idle_connection_is_closed_after_the_timeout(start_collector):
    collector = start_collector("--idle-timeout", "1", *FAST)
    with connect(collector.port) as sock:
        started = time.monotonic()
        assert_closed_by_server(sock)
        assert time.monotonic() - started >= 0.9
    assert collector.stop() == 0


def test_connections_beyond_the_maximum_are_refused_and_the_others_served(start_collector):
    collector = start_collector(
        "--max-connections", "2", *FAST, *CLOCK, env=manage_env(COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS="2")
    )
    expected = Expected()
    with connect(collector.port) as one, connect(collector.port) as two:
        time.sleep(0.3)
        with connect(collector.port) as three:
            assert_closed_by_server(three)
        one.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:21", 2, seed=1, expected=expected)))
        two.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:22", 2, seed=2, expected=expected)))
    time.sleep(0.3)
    assert collector.stop() == 0
    assert exported() == expected.rows(MINUTE)
    assert "refused 1" in stats_line(collector.output)


def test_port_in_use_is_a_readable_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "collect", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=manage_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: that port is already in use" in result.stderr
    assert "must all be started with --reuse-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigkill_loses_at_most_the_last_flush_interval_and_a_restart_never_double_counts(start_collector):
    from sensors.models import Reading

    # Without the journal (COLLECTOR_JOURNAL=off; with it, test_collect_journal.py) the bound under
    # test is the open minute's write interval: both set to 0.5 s.
    no_journal = manage_env(COLLECTOR_JOURNAL="off")
    collector = start_collector(
        "--flush-interval", "0.5", "--open-minute-interval", "0.5", "--stats-interval", "3600", env=no_journal
    )
    line = b"Soil: 600; from 5c:cf:7f:00:00:aa\n"
    sent_at: list[float] = []
    with connect(collector.port) as sock:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            sock.sendall(line)
            sent_at.append(time.monotonic())
            time.sleep(0.01)
        collector.process.kill()  # no drain, no final flush
        killed = time.monotonic()
        collector.process.wait(10)
    stored = sum(Reading.objects.values_list("samples", flat=True))
    # Lines that arrived after the last flush can be lost: at most one flush interval (0.5 s),
    # plus one more for a batch that was handed to the writer but not yet committed.
    at_risk = sum(1 for moment in sent_at if moment > killed - 1.0)
    assert len(sent_at) - at_risk <= stored <= len(sent_at)

    second = start_collector(*FAST, env=no_journal)
    with connect(second.port) as sock:
        sock.sendall(line * 25)
        time.sleep(0.3)
    assert second.stop() == 0
    assert sum(Reading.objects.values_list("samples", flat=True)) == stored + 25
    assert_rollups_match_minutes()  # a kill never leaves minutes without their hours and days


def test_connections_from_outside_the_allowed_networks_are_refused(start_collector):
    collector = start_collector(*FAST, env=manage_env(COLLECTOR_ALLOWED_NETWORKS="192.0.2.0/24,10.0.0.0/8"))
    with connect(collector.port) as sock:
        assert_closed_by_server(sock)
    assert collector.stop() == 0
    assert Sensor.objects.count() == 0
    assert "refusing connection from 127.0.0.1: not in COLLECTOR_ALLOWED_NETWORKS" in collector.output
    assert "(network 1)" in stats_line(collector.output)


def test_allowed_networks_let_their_boards_in(start_collector):
    collector = start_collector(*FAST, env=manage_env(COLLECTOR_ALLOWED_NETWORKS="10.0.0.0/8,127.0.0.0/8"))
    with connect(collector.port) as sock:
        sock.sendall(b"Soil: 600; from 5c:cf:7f:00:00:01\n")
        time.sleep(0.3)
    assert collector.stop() == 0
    assert Sensor.objects.count() == 1


def test_with_unknown_sensors_rejected_only_registered_boards_are_stored(start_collector):
    Sensor.objects.create(device_id="5c:cf:7f:00:00:01", name="Known")
    collector = start_collector(*FAST, *CLOCK, env=manage_env(COLLECTOR_UNKNOWN_SENSORS="reject"))
    expected = Expected()
    with connect(collector.port) as sock:
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:01", 4, seed=1, expected=expected)))
        sock.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:02", 3, seed=2, expected=Expected())))
    time.sleep(0.3)
    assert collector.stop() == 0
    assert exported() == expected.rows(MINUTE)
    assert list(Sensor.objects.values_list("device_id", flat=True)) == ["5c:cf:7f:00:00:01"]
    assert "unknown_sensor=3" in stats_line(collector.output)


def test_one_client_holding_many_connections_cannot_lock_a_real_board_out(start_collector):
    """120 connections from one address against 50 slots: it gets half, a board elsewhere still reports."""
    collector = start_collector("--max-connections", "50", *FAST, *CLOCK)
    expected = Expected()
    hogs = []
    try:
        for _ in range(120):
            hogs.append(connect(collector.port))
        with socket.create_connection(
            ("127.0.0.1", collector.port), timeout=5, source_address=("127.0.0.2", 0)
        ) as board:
            board.sendall(b"".join(firmware_lines("5c:cf:7f:00:00:31", 3, seed=1, expected=expected)))
            time.sleep(0.3)
    finally:
        for sock in hogs:
            sock.close()
    assert collector.stop() == 0
    assert exported() == expected.rows(MINUTE)
    stats = stats_line(collector.output)
    assert "refused per address 95" in stats and "connections opened 26" in stats
    assert "refusing connection from 127.0.0.1: it has 25 open" in collector.output


def test_a_flood_of_new_macs_registers_only_the_limit_and_lists_the_rest_for_the_admin(start_collector, admin_client):
    from sensors.models import RefusedSensor

    collector = start_collector(*FAST, env=manage_env(COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE="60"))
    flood = b"".join(f"Soil: 600; from 5c:cf:7f:01:00:{i:02x}\n".encode() for i in range(200))
    with connect(collector.port) as sock:
        sock.sendall(flood)
        time.sleep(0.5)
    assert collector.stop() == 0
    assert Sensor.objects.count() == 60
    assert "too_many_new_sensors=140" in stats_line(collector.output)
    assert RefusedSensor.objects.count() == 140
    page = admin_client.get("/admin/sensors/refusedsensor/").content.decode()
    assert "5c:cf:7f:01:00:c7" in page and "too_many_new_sensors" in page
    refused = RefusedSensor.objects.get(device_id="5c:cf:7f:01:00:c7")
    admin_client.post(
        "/admin/sensors/refusedsensor/", {"action": "register", "_selected_action": [refused.pk], "index": "0"}
    )
    assert Sensor.objects.filter(device_id="5c:cf:7f:01:00:c7").exists()
    assert not RefusedSensor.objects.filter(device_id="5c:cf:7f:01:00:c7").exists()


def test_the_per_sensor_metric_limit_counts_what_is_stored_across_restarts(start_collector):
    from sensors.models import Reading

    env = manage_env(COLLECTOR_MAX_METRICS_PER_SENSOR="4")
    for run in range(2):
        collector = start_collector(*FAST, env=env)
        keys = "; ".join(f"k{run}x{i}: {i}" for i in range(6))  # six new keys each run
        with connect(collector.port) as sock:
            sock.sendall(f"{keys}; from 5c:cf:7f:00:00:77\n".encode())
            time.sleep(0.3)
        assert collector.stop() == 0
    assert Reading.objects.values("metric").distinct().count() == 4  # not 4 per run
    assert "too_many_metrics=" in stats_line(collector.output)
