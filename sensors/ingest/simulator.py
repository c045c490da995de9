"""A fleet of simulated sensor boards speaking exactly the firmware's line format.

No Django import. Each board keeps one TCP connection, writes one line every
`interval` seconds and, like the firmware, opens a new connection when the old
one is gone. Values drift plausibly (a random walk inside physical bounds); odd
boards behave like a DHT22 (one decimal), even ones like a DHT11 (integers).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

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

    def line(self) -> bytes:
        """The next firmware line, e.g. ``Soil: 612; temp: 21; hum: 48; from 5c:cf:7f:0a:1b:2c``."""
        rng = self.rng
        self.soil = _walk(self.soil, 4, 200, 1000, rng)
        self.temperature = _walk(self.temperature, 0.3, 2, 40, rng)
        self.humidity = _walk(self.humidity, 0.8, 20, 95, rng)
        if self.dht22:
            temp, hum = f"{self.temperature:.1f}", f"{self.humidity:.1f}"
        else:
            temp, hum = str(round(self.temperature)), str(round(self.humidity))
        return f"Soil: {round(self.soil)}; temp: {temp}; hum: {hum}; from {self.mac}\n".encode("ascii")


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
