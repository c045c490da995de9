"""Load generator: thousands of simulated boards from one process, plain non-blocking sockets.

Boards speak exactly the firmware's line (sensors.ingest.simulator.Board: drifting values, DHT11
integers or DHT22 decimals, distinct MACs). Every line handed to the kernel is tallied per
metric (count and value sum), so after the collector stops the stored totals can be compared
exactly with what was sent: any difference is a lost (or doubled) sample.
"""

from __future__ import annotations

import errno
import random
import selectors
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensors.ingest.simulator import Board, make_fleet

METRICS = (b"soil_moisture", b"air_temperature", b"humidity")


@dataclass
class Sent:
    lines: int = 0
    samples: Counter = field(default_factory=Counter)  # metric -> samples
    sums: Counter = field(default_factory=Counter)  # metric -> sum of values

    def add(self, line: bytes) -> None:
        # b"Soil: 612; temp: 21; hum: 48; from 5c:..." -> the three values, in METRICS order
        self.lines += 1
        parts = line.split(b"; ", 3)
        for metric, part in zip(METRICS, parts[:3], strict=True):
            name = metric.decode()
            self.samples[name] += 1
            self.sums[name] += float(part[part.index(b":") + 1 :])


@dataclass
class ConnectResult:
    connected: int = 0
    refused: int = 0
    timed_out: int = 0
    other_errors: int = 0
    first_started: float = 0.0
    last_connected: float = 0.0  # monotonic time of the last completed connect
    connect_times: list[float] = field(default_factory=list)  # seconds from start, per board

    @property
    def failed(self) -> int:
        return self.refused + self.timed_out + self.other_errors


class Fleet:
    """N boards, each with one TCP connection, each sending one line every `interval` seconds."""

    def __init__(self, count: int, host: str, port: int, first_index: int = 0, seed: int = 1) -> None:
        self.host, self.port = host, port
        self.boards: list[Board] = make_fleet(count, first_index=first_index, seed=seed)
        self.socks: list[socket.socket | None] = [None] * count
        self.sent = Sent()
        self.send_errors = 0
        self.blocked_sends = 0
        self._pending: dict[int, bytes] = {}

    # --- connecting --------------------------------------------------------------------
    def connect_all(self, spread: float = 0.0, timeout: float = 30.0, first_line: bool = False) -> ConnectResult:
        """Open every board's connection, starting them evenly over `spread` seconds (0: at once).

        A connect counts as done when the kernel completes the handshake (SYN-ACK received),
        which needs room in the collector's accept queue: a full queue drops the SYN and the
        client retries after 1 s, 3 s, ... (the delay the old server showed).
        """
        result = ConnectResult()
        selector = selectors.DefaultSelector()
        count = len(self.boards)
        started = time.monotonic()
        result.first_started = started
        result.connect_times = [0.0] * count
        waiting = 0
        next_index = 0
        deadline = started + spread + timeout
        while next_index < count or waiting:
            now = time.monotonic()
            # start the connects that are due
            due = count if spread <= 0 else min(count, int((now - started) / spread * count) + 1)
            while next_index < due:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex((self.host, self.port))
                if code not in (0, errno.EINPROGRESS):
                    result.other_errors += 1
                    sock.close()
                else:
                    selector.register(sock, selectors.EVENT_WRITE, next_index)
                    waiting += 1
                next_index += 1
            if now > deadline:
                result.timed_out += waiting
                for key in list(selector.get_map().values()):
                    key.fileobj.close()
                break
            for key, _ in selector.select(0.001 if next_index < count else 0.05):
                index = key.data
                sock = key.fileobj
                selector.unregister(sock)
                waiting -= 1
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error == 0:
                    moment = time.monotonic()
                    result.connected += 1
                    result.last_connected = moment
                    result.connect_times[index] = moment - started
                    self.socks[index] = sock
                    if first_line:
                        self._send(index)
                elif error == errno.ECONNREFUSED:
                    result.refused += 1
                    sock.close()
                else:
                    result.other_errors += 1
                    sock.close()
        selector.close()
        return result

    # --- sending -------------------------------------------------------------------------
    def _send(self, index: int) -> None:
        sock = self.socks[index]
        if sock is None:
            return
        data = self._pending.pop(index, b"")
        line = self.boards[index].line()
        data += line
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.send_errors += 1
            self.socks[index] = None
            sock.close()
            return
        if n < len(data):
            self.blocked_sends += 1
            self._pending[index] = data[n:]
        # Tally once handed over (a remainder is sent before the board's next line, or at stop).
        self.sent.add(line)

    def run(self, duration: float, interval: float = 2.0, seed: int = 7, tick: float = 0.01) -> None:
        """Each board sends one line every `interval` s, at its own random phase, for `duration` s."""
        rng = random.Random(seed)
        slots = max(1, round(interval / tick))
        by_slot: list[list[int]] = [[] for _ in range(slots)]
        for index in range(len(self.boards)):
            by_slot[rng.randrange(slots)].append(index)
        started = time.monotonic()
        done = 0  # slots served so far
        end = started + duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - started) / tick) + 1
            while done < due:
                for index in by_slot[done % slots]:
                    self._send(index)
                done += 1
            time.sleep(max(0.0, started + done * tick - time.monotonic()))
        self.flush_pending()

    def flush_pending(self) -> None:
        for index, data in list(self._pending.items()):
            sock = self.socks[index]
            if sock is None:
                continue
            sock.setblocking(True)
            try:
                sock.sendall(data)
            except OSError:
                self.send_errors += 1
            sock.setblocking(False)
        self._pending.clear()

    def close(self) -> None:
        for index, sock in enumerate(self.socks):
            if sock is not None:
                sock.close()
                self.socks[index] = None
