"""The Collector in this process (like Django's LiveServerThread): real listener, real storage, fake clock."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connections

from sensors import storage
from sensors.ingest.collector import Collector, CollectorConfig, KnownSensors
from sensors.ingest.listener import BindError
from sensors.ingest.writer import Writer
from sensors.models import Reading

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE = datetime(2026, 11, 24, 10, 15, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CollectorThread(threading.Thread):
    """The collector in a thread, like Django's LiveServerThread: a start-up error is handed to the caller.

    The thread's database work happens on the writer thread, which opens and closes its own
    connection (`connections.close_all` in that thread).
    """

    def __init__(self, clock: FakeClock, **config: object) -> None:
        super().__init__(daemon=True)
        options = {"host": "127.0.0.1", "port": 0, "flush_interval": 0.2, "stats_interval": 3600, **config}
        writer = Writer(storage.write_batch, on_exit=connections.close_all)
        self.collector = Collector(CollectorConfig(**options), writer, clock=clock)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.lost: int | None = None

    def run(self) -> None:
        try:
            self.address = self.collector.start()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self.collector.run()
        finally:
            self.lost = self.collector.shutdown()

    def start_and_wait(self, timeout: float = 10.0) -> None:
        """Start the thread; re-raise in the caller whatever stopped the collector from listening."""
        self.start()
        if not self.ready.wait(timeout):
            raise AssertionError("collector thread did not start")
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.collector.request_stop()
        self.join(15)
        assert not self.is_alive()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MINUTE + 58.5)


@pytest.fixture
def running(clock):
    thread = CollectorThread(clock)
    thread.start_and_wait()
    yield thread
    if thread.is_alive():
        thread.stop()


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_samples_either_side_of_a_minute_boundary_go_to_their_own_minutes(running, clock):
    line = b"Soil: 600; temp: 20; hum: 50; from 5c:cf:7f:0a:1b:2c\n"
    with socket.create_connection(running.address) as sock:
        sock.sendall(line * 3)
        wait_until(lambda: running.collector.lines == 3)
        clock.now = MINUTE + 60.0  # the next minute starts
        sock.sendall(line.replace(b"600", b"610") * 2)
        wait_until(lambda: running.collector.lines == 5)
    running.stop()
    assert running.lost == 0
    rows = {(r.start.minute, r.metric): (r.samples, r.value_sum) for r in Reading.objects.all()}
    assert rows[(15, "soil_moisture")] == (3, 1800.0)
    assert rows[(16, "soil_moisture")] == (2, 1220.0)
    assert rows[(15, "humidity")] == (3, 150.0)
    assert len(rows) == 6


def test_data_already_received_is_written_on_stop(running):
    with socket.create_connection(running.address) as sock:
        sock.sendall(b"Soil: 1; from 5c:cf:7f:0a:1b:2c\n" * 50)
    running.stop()
    assert running.lost == 0
    assert Reading.objects.get().samples == 50


def test_known_sensors_keep_the_last_good_list_when_the_database_fails():
    from sensors.ingest.collector import KnownSensors

    answers = [["5c:cf:7f:00:00:01"], RuntimeError("database is locked")]

    def loader():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    known = KnownSensors(loader)
    assert known.refresh() is True
    assert known.refresh() is False
    assert known.macs == frozenset({"5c:cf:7f:00:00:01"})


# --- flush policy: ended minutes promptly, the open minute every open_minute_interval -----
class RecordingWriter:
    pending_buckets = 0
    rows_written = 0
    dropped_samples = 0

    def __init__(self) -> None:
        self.batches: list = []

    def start(self) -> None:
        pass

    def submit(self, batch) -> None:
        if batch:
            self.batches.append(batch)

    def finish(self, timeout: float) -> int:
        return 0


def minutes_of(batch) -> set[int]:
    return {minute for _, _, minute in batch.buckets}


@pytest.mark.django_db(transaction=False)
def test_ended_minutes_are_handed_over_each_flush_and_the_open_minute_only_every_open_interval(clock):
    writer = RecordingWriter()
    config = CollectorConfig(host="127.0.0.1", port=0, flush_interval=0.01, open_minute_interval=3600)
    collector = Collector(config, writer, clock=clock)  # type: ignore[arg-type]
    collector.start()
    try:
        line = b"Soil: 600; temp: 20; hum: 50; from 5c:cf:7f:0a:1b:2c\n"
        collector.handle_block("10.0.0.1", line * 2, clock())  # minute 10:15
        time.sleep(0.02)
        collector.step(0)
        assert writer.batches == []  # 10:15 is still open
        clock.now = MINUTE + 61.0
        collector.handle_block("10.0.0.1", line, clock())  # minute 10:16
        time.sleep(0.02)
        collector.step(0)
        assert [minutes_of(batch) for batch in writer.batches] == [{int(MINUTE)}]
        assert writer.batches[0].sensors["5c:cf:7f:0a:1b:2c"].last_seen == MINUTE + 58.5
        assert collector.aggregator.minutes == [int(MINUTE) + 60]
        collector._next_open_flush = 0.0  # the open-minute interval has passed
        collector.step(0)
        assert minutes_of(writer.batches[-1]) == {int(MINUTE) + 60}
        assert collector.aggregator.pending_buckets == 0
    finally:
        collector.listener.close_all()


def test_a_start_up_error_in_the_collector_thread_reaches_the_caller(clock):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        thread = CollectorThread(clock, port=taken.getsockname()[1])
        with pytest.raises(BindError, match="that port is already in use"):
            thread.start_and_wait()
    thread.join(5)
    assert not thread.is_alive()


class RecordingSideJob:
    """A side thread that only notes when it is told what (a stand-in for the retention purge)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def start(self) -> None:
        self.events.append("job started")

    def request_stop(self) -> None:
        self.events.append("job asked to stop")

    def stop(self) -> bool:
        self.events.append("job joined")
        return True


@pytest.mark.django_db(transaction=False)
def test_shutdown_writes_everything_before_it_waits_for_the_side_jobs(clock, monkeypatch):
    """A purge under way is told to stop first but waited for last: it never delays the final write."""
    events: list[str] = []
    writer = RecordingWriter()
    monkeypatch.setattr(writer, "finish", lambda timeout: events.append("final write") or 0)
    collector = Collector(
        CollectorConfig(host="127.0.0.1", port=0), writer, clock=clock, side_jobs=[RecordingSideJob(events)]
    )  # type: ignore[arg-type]
    collector.start()
    listener = collector.listener
    for step in ("stop_accepting", "close_all"):
        original = getattr(listener, step)
        monkeypatch.setattr(listener, step, lambda original=original, step=step: events.append(step) or original())
    collector.handle_block("10.0.0.1", b"Soil: 600; from 5c:cf:7f:0a:1b:2c\n", clock())
    assert collector.shutdown() == 0
    assert events == ["job started", "job asked to stop", "stop_accepting", "close_all", "final write", "job joined"]
    assert sum(batch.sample_count for batch in writer.batches) == 1


@pytest.mark.django_db(transaction=False)
def test_what_is_held_is_written_even_when_closing_the_sockets_fails(clock, monkeypatch):
    writer = RecordingWriter()
    collector = Collector(CollectorConfig(host="127.0.0.1", port=0), writer, clock=clock)  # type: ignore[arg-type]
    collector.start()
    collector.handle_block("10.0.0.1", b"Soil: 600; from 5c:cf:7f:0a:1b:2c\n", clock())

    def out_of_files() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(collector.listener, "stop_accepting", out_of_files)
    with pytest.raises(OSError):
        collector.shutdown()
    assert sum(batch.sample_count for batch in writer.batches) == 1


# --- which MACs may report ------------------------------------------------------------------
class Tick:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_new_sensors_are_registered_at_most_n_a_minute_and_up_to_a_total():
    tick = Tick()
    gate = KnownSensors(lambda: ["5c:cf:7f:00:00:00"], register=True, max_new_per_minute=3, max_sensors=6, clock=tick)
    assert gate.refresh()
    macs = [f"5c:cf:7f:00:01:{i:02x}" for i in range(10)]
    assert [gate.admit(mac) for mac in macs[:4]] == [None, None, None, "too_many_new_sensors"]
    assert gate.admit("5c:cf:7f:00:00:00") is None  # a registered sensor always reports
    assert gate.admit(macs[0]) is None  # so does one admitted before
    tick.now += 60  # a new minute: three more, but only two fit under the total of six
    assert [gate.admit(mac) for mac in macs[4:7]] == [None, None, "too_many_sensors"]


def test_before_the_database_could_be_read_every_line_is_kept_in_either_mode():
    def down():
        raise RuntimeError("database is locked")

    for register in (True, False):
        gate = KnownSensors(down, register=register, max_new_per_minute=1)
        assert gate.refresh() is False
        assert gate.admit("5c:cf:7f:00:01:01") is None and gate.admit("5c:cf:7f:00:01:02") is None


def test_refused_macs_are_handed_to_the_writer_for_the_admin(clock):
    writer = RecordingWriter()
    gate = KnownSensors(lambda: [], register=True, max_new_per_minute=1, max_sensors=10)
    gate.refresh()
    collector = Collector(CollectorConfig(host="127.0.0.1", port=0), writer, clock=clock, known_sensors=gate)  # type: ignore[arg-type]
    block = b"".join(f"Soil: 1; from 5c:cf:7f:00:02:{i:02x}\n".encode() for i in range(3)) * 2
    collector.handle_block("10.0.0.9", block, clock())
    collector.flush()
    [batch] = writer.batches
    assert list(batch.sensors) == ["5c:cf:7f:00:02:00"]
    assert {mac: (r.reason, r.lines, r.peer) for mac, r in batch.refused.items()} == {
        "5c:cf:7f:00:02:01": ("too_many_new_sensors", 2, "10.0.0.9"),
        "5c:cf:7f:00:02:02": ("too_many_new_sensors", 2, "10.0.0.9"),
    }
    assert collector.rejected_lines["too_many_new_sensors"] == 4
    collector.listener.close_all()
