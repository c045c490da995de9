"""MQTT ingest: messages/s through the collector's MQTT source end to end, next to a bare subscriber.

    .venv/bin/python bench/mqtt.py [--messages 200000] [--devices 10] [--rounds 3]

Both consumers drain the same backlog from the same broker in the same run: a Mosquitto of the
bench's own on a free port of 127.0.0.1 (the machine's `mosquitto` binary, no persistence, no
queue limit so nothing is dropped), N messages of the generic JSON form
(`greenhouse/bench-K/state`, `{"temp": .., "hum": .., "soil": ..}`: 3 samples each) published by
`mosquitto_pub -l` at QoS 1 while the consumer is away, queued for its persistent session.

- **bare**: a paho client (the collector's settings: MQTT 3.1.1, QoS 1, clean_session off) that
  only counts messages; rate = N / (first message to last).
- **collector**: the real `manage.py collect` on a throwaway SQLite database; rate = N / (the
  moment its log says it connected to the moment the database holds all 3N samples): parse,
  aggregate, journal (on, the default) and the minute merge included.

The ratio collector / bare is the figure that holds from one day to the next (the machine's speed
varies up to 2x); every round is printed. Target: the ratio of the medians at least 0.5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PYTHON, ROOT, Collector, Database, machine, result_line

TARGET_RATIO = 0.5
TOPIC = "greenhouse/+/state"

BARE_SUBSCRIBER = r"""
import sys, time, threading
import paho.mqtt.client as mqtt
port, client_id, expected = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
state = {"count": 0, "first": None, "last": None}
done = threading.Event()
def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe(sys.argv[4], qos=1)
def on_message(client, userdata, message):
    now = time.perf_counter()
    if state["first"] is None:
        state["first"] = now
    state["count"] += 1
    state["last"] = now
    if state["count"] >= expected:
        done.set()
def on_subscribe(*args):
    if expected == 0:
        done.set()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
client.on_connect, client.on_message, client.on_subscribe = on_connect, on_message, on_subscribe
client.connect("127.0.0.1", port)
client.loop_start()
done.wait(600)
client.disconnect()
client.loop_stop()
elapsed = (state["last"] - state["first"]) if state["count"] > 1 else 0.0
print(state["count"], elapsed)
"""


class Broker:
    """A Mosquitto of the bench's own: no persistence, nothing dropped from a session's queue."""

    def __init__(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.dir = Path(tempfile.mkdtemp(prefix="greenhouse-bench-mqtt-"))
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = self.dir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_queued_bytes 0\n"
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def publish_backlog(self, messages: int, devices: int) -> None:
        """`messages` generic-form messages over `devices` topics at QoS 1, by mosquitto_pub -l (C, fast)."""
        per_device = messages // devices
        publishers = []
        for device in range(devices):
            lines = "".join(
                json.dumps({"temp": 20 + index % 7, "hum": 40 + index % 11, "soil": 500 + index % 13}) + "\n"
                for index in range(per_device)
            )
            publisher = subprocess.Popen(
                [
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-q",
                    "1",
                    "-l",
                    "-t",
                    f"greenhouse/bench-{device}/state",
                ],
                stdin=subprocess.PIPE,
            )
            publisher.stdin.write(lines.encode())
            publisher.stdin.close()
            publishers.append(publisher)
        for publisher in publishers:
            if publisher.wait(120) != 0:
                raise SystemExit("mosquitto_pub failed")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def bare(broker: Broker, messages: int, devices: int, client_id: str) -> float:
    """Messages/s of a subscriber that only counts, draining a backlog of `messages`."""
    script = [PYTHON, "-c", BARE_SUBSCRIBER, str(broker.port), client_id]
    subprocess.run([*script, "0", TOPIC], check=True, capture_output=True, timeout=60)  # the session, subscribed
    broker.publish_backlog(messages, devices)
    out = subprocess.run([*script, str(messages), TOPIC], check=True, capture_output=True, text=True, timeout=600)
    count, elapsed = out.stdout.split()
    if int(count) != messages:
        raise SystemExit(f"the bare subscriber got {count} of {messages} messages")
    return messages / float(elapsed)


def stored_samples(db: Database) -> int:
    path = db.url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute("SELECT COALESCE(SUM(samples), 0) FROM sensors_reading").fetchone()[0]


def collector(broker: Broker, messages: int, devices: int, client_id: str) -> tuple[float, float]:
    """Messages/s through `collect` (log says connected -> the database holds every sample), and CPU µs a message."""
    from common import cpu_seconds

    db = Database()
    env = {
        "COLLECTOR_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
        "COLLECTOR_MQTT_CLIENT_ID": client_id,
        "COLLECTOR_MQTT_TOPICS": TOPIC,
        "COLLECTOR_JOURNAL_DIR": str(Path(db.tmp) / "journal"),
    }
    args = ("--flush-interval", "0.3", "--open-minute-interval", "0.3", "--stats-interval", "3600")
    try:
        first = Collector(db, *args, env=env)
        _wait(lambda: "subscribed to" in first.output, 30)
        first.stop()
        broker.publish_backlog(messages, devices)
        second = Collector(db, *args, env=env)
        _wait(lambda: "connected to the MQTT broker" in second.output, 30)
        started, cpu_before = time.perf_counter(), cpu_seconds(second.process.pid)
        _wait(lambda: stored_samples(db) >= 3 * messages, 600, interval=0.05)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(second.process.pid) - cpu_before
        if second.stop() != 0 or stored_samples(db) != 3 * messages:
            raise SystemExit(
                f"the collector stored {stored_samples(db)} samples of {3 * messages}:\n{second.output[-3000:]}"
            )
        for process in (first, second):
            process.assert_no_traceback()
        return messages / elapsed, cpu / messages * 1e6
    finally:
        db.remove()


def _wait(condition, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if not shutil.which("mosquitto_pub"):
        raise SystemExit("needs mosquitto_pub (apt-get install mosquitto-clients)")
    print(f"machine: {machine()}; {options.messages} messages over {options.devices} devices, {options.rounds} rounds")
    broker = Broker()
    bares, collectors = [], []
    try:
        for round_number in range(options.rounds):
            # Alternate the order so a machine that speeds up or slows down during the run favours neither.
            order = ("bare", "collector") if round_number % 2 == 0 else ("collector", "bare")
            for kind in order:
                client_id = f"bench-{kind}-{round_number}"
                if kind == "bare":
                    bares.append(bare(broker, options.messages, options.devices, client_id))
                else:
                    rate, cpu_us = collector(broker, options.messages, options.devices, client_id)
                    collectors.append(rate)
                    print(
                        f"round {round_number + 1}: collector {rate:,.0f} messages/s ({3 * rate:,.0f} samples/s), "
                        f"{cpu_us:.0f} µs CPU a message",
                        flush=True,
                    )
            print(
                f"round {round_number + 1}: bare subscriber {bares[-1]:,.0f} messages/s; "
                f"ratio {collectors[-1] / bares[-1]:.2f}",
                flush=True,
            )
    finally:
        broker.stop()
    ratio = statistics.median(collectors) / statistics.median(bares)
    result_line(
        "mqtt ingest",
        ratio >= TARGET_RATIO,
        f"collector median {statistics.median(collectors):,.0f} messages/s vs bare subscriber "
        f"{statistics.median(bares):,.0f} messages/s: ratio {ratio:.2f} (target >= {TARGET_RATIO})",
    )
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
