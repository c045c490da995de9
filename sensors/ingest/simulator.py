"""A fleet of simulated sensor boards speaking exactly the firmware's line format.

No Django import. Each board keeps one TCP connection, writes one line every
`interval` seconds and, like the firmware, opens a new connection when the old
one is gone. Values drift plausibly (a random walk inside physical bounds); odd
boards behave like a DHT22 (one decimal), even ones like a DHT11 (integers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

from .mqtt import MqttConfig

logger = logging.getLogger(__name__)


def board_mac(index: int) -> str:
    """Distinct, stable MACs in Espressif's 5c:cf:7f range."""
    return f"5c:cf:7f:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"


def _walk(value: float, step: float, low: float, high: float, rng: random.Random) -> float:
    return min(high, max(low, value + rng.uniform(-step, step)))


@dataclass
class Board:
    mac: str
    dht22: bool
    rng: random.Random
    soil: float = 600.0
    temperature: float = 20.0
    humidity: float = 55.0

    def advance(self) -> tuple[str, str, str]:
        """The next soil, temperature and humidity, as text the way the sensor would print them."""
        rng = self.rng
        self.soil = _walk(self.soil, 4, 200, 1000, rng)
        self.temperature = _walk(self.temperature, 0.3, 2, 40, rng)
        self.humidity = _walk(self.humidity, 0.8, 20, 95, rng)
        if self.dht22:
            return str(round(self.soil)), f"{self.temperature:.1f}", f"{self.humidity:.1f}"
        return str(round(self.soil)), str(round(self.temperature)), str(round(self.humidity))

    def line(self) -> bytes:
        """The next firmware line, e.g. ``Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c``."""
        soil, temp, hum = self.advance()
        return f"Soil: {soil}; temp: {temp}; hum: {hum}; from {self.mac}\n".encode("ascii")


@dataclass
class FleetStats:
    lines_sent: int = 0
    connections: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    started: float = field(default_factory=time.monotonic)


def make_fleet(count: int, first_index: int = 0, seed: int = 1) -> list[Board]:
    return [
        Board(
            board_mac(first_index + i),
            dht22=(first_index + i) % 2 == 1,
            rng=random.Random(seed * 1_000_003 + first_index + i),
            soil=random.Random(i).uniform(400, 800),
            temperature=random.Random(i + 1).uniform(12, 26),
            humidity=random.Random(i + 2).uniform(40, 70),
        )
        for i in range(count)
    ]


async def run_board(
    board: Board, host: str, port: int, interval: float, stop: asyncio.Event, stats: FleetStats
) -> None:
    await _sleep_or_stop(stop, board.rng.uniform(0, interval))  # boards do not start in lockstep
    backoff = 0.5
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats.connect_failures += 1
            await _sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        backoff = 0.5
        stats.connections += 1
        try:
            while not stop.is_set() and not reader.at_eof():
                writer.write(board.line())
                await writer.drain()
                stats.lines_sent += 1
                await _sleep_or_stop(stop, interval)
            if not stop.is_set():
                stats.reconnects += 1  # the server closed us (idle timeout, restart)
        except OSError:
            stats.reconnects += 1
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def run_fleet(
    boards: list[Board],
    host: str,
    port: int,
    interval: float,
    stop: asyncio.Event,
    report_every: float = 30.0,
) -> FleetStats:
    stats = FleetStats()
    tasks = [asyncio.create_task(run_board(board, host, port, interval, stop, stats)) for board in boards]
    while not stop.is_set():
        await _sleep_or_stop(stop, report_every)
        logger.info(
            "simulator: %d boards, %d lines sent, %d connections, %d reconnects, %d failed connects",
            len(boards),
            stats.lines_sent,
            stats.connections,
            stats.reconnects,
            stats.connect_failures,
        )
    await asyncio.gather(*tasks)
    return stats


# --- MQTT devices (simulate_sensors --mqtt URL --kind ...) ------------------------------------------
MQTT_KINDS = ("tasmota", "esphome", "shelly")
Publication = tuple[str, bytes, bool]  # (topic, payload, retain)


def mqtt_device_name(kind: str, index: int) -> str:
    return f"sim-{kind}-{index}"


def device_messages(kind: str, name: str, board: Board, now: float) -> list[Publication]:
    """One report of a simulated device, in its firmware's documented format (docs/devices.md)."""
    soil, temp, hum = board.advance()
    if kind == "tasmota":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        sensor = {"Temperature": float(temp), "Humidity": float(hum), "DewPoint": round(float(temp) - 8.0, 1)}
        document = {"Time": stamp, "AM2301": sensor, "ANALOG": {"A0": int(soil)}, "TempUnit": "C"}
        return [(f"tele/{name}/SENSOR", json.dumps(document, separators=(",", ":")).encode(), False)]
    if kind == "esphome":  # one topic per sensor, retained as ESPHome does by default
        return [
            (f"{name}/sensor/temperature/state", temp.encode(), True),
            (f"{name}/sensor/humidity/state", hum.encode(), True),
            (f"{name}/sensor/soil_moisture/state", soil.encode(), True),
        ]
    if kind == "shelly":
        celsius = float(temp)
        params = {
            "ts": round(now, 2),
            "temperature:0": {"id": 0, "tC": celsius, "tF": round(celsius * 9 / 5 + 32, 1)},
            "humidity:0": {"id": 0, "rh": float(hum)},
        }
        document = {"src": name, "dst": f"{name}/events", "method": "NotifyStatus", "params": params}
        return [(f"{name}/events/rpc", json.dumps(document).encode(), False)]
    raise ValueError(f"unknown device kind {kind!r} (one of {', '.join(MQTT_KINDS)})")


def availability_message(kind: str, name: str, online: bool) -> Publication:
    """What the device's birth message (online) or last will (offline) would say, retained."""
    if kind == "tasmota":
        return f"tele/{name}/LWT", b"Online" if online else b"Offline", True
    if kind == "esphome":
        return f"{name}/status", b"online" if online else b"offline", True
    return f"{name}/online", b"true" if online else b"false", True


@dataclass
class MqttFleetStats:
    messages_sent: int = 0
    failures: int = 0


def run_mqtt_fleet(
    config: MqttConfig,
    kind: str,
    boards: list[Board],
    interval: float,
    stop: threading.Event,
    report_every: float = 30.0,
) -> MqttFleetStats:
    """Publish each simulated device's report every `interval` s (QoS 1) until `stop`; one client for the fleet.

    The devices' birth messages are published first and their wills ("offline") on stop, as
    the broker would publish them for real devices that went away.
    """
    import paho.mqtt.client as mqtt

    stats = MqttFleetStats()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"greenhouse-sim-{kind}-{os.getpid()}")
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        client.tls_set(ca_certs=config.ca_file)
    client.connect_async(config.host, config.port)
    client.loop_start()
    names = [mqtt_device_name(kind, int(board.mac.replace(":", "")[-6:], 16)) for board in boards]

    def publish(publications: list[Publication]) -> list[mqtt.MQTTMessageInfo]:
        sent = []
        for topic, payload, retain in publications:
            info = client.publish(topic, payload, qos=1, retain=retain)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                stats.messages_sent += 1
                sent.append(info)
            else:  # the broker went away: paho reconnects, this report is skipped like a real device's
                stats.failures += 1
        return sent

    try:
        while not client.is_connected() and not stop.wait(0.05):
            pass
        publish([availability_message(kind, name, True) for name in names])
        next_report = time.monotonic() + report_every
        while not stop.is_set():
            started = time.monotonic()
            for name, board in zip(names, boards, strict=True):
                publish(device_messages(kind, name, board, time.time()))
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + report_every
                logger.info("simulator: %d %s devices, %d messages sent", len(boards), kind, stats.messages_sent)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        for info in publish([availability_message(kind, name, False) for name in names]):
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return stats
