"""Burst: lines/s taken end to end from 8 connections streaming as fast as they can.

Target: at least 1,000,000 lines/s (framed, parsed, aggregated, stored) with the collector's RSS
under 200 MB throughout. The same load is then sent to a bare reader that only counts newlines
(bench/bare_reader.py), in the same run, and the ratio is printed.

    .venv/bin/python bench/burst.py [--connections 8] [--duration 10] [--boards 8]
    .venv/bin/python bench/burst.py --boards 10000 --no-bare    # many sensors per connection

By default each connection is one board (its own MAC) sending as fast as it can, as in the old
server's measurement; with `--boards N` the connections carry the lines of N boards between them
(distinct MACs interleaved, as a gateway forwarding many boards would), the harder case for the
aggregation. Lines are the simulator's (drifting values, DHT11 and DHT22 formats), from a pool of
pre-generated distinct lines, so the load generator itself is never the bottleneck.
Timing: from the first byte until the server has read everything (each sender half-closes and
waits for the server to close its side, which the server only does after reading up to EOF).
Every line sent must then be stored: sum of Reading.samples per metric after SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import signal
import socket
import subprocess
import threading
import time

from common import PYTHON, ROOT, Collector, Database, Sampler, machine, mb, result_line
from loadgen import Sent, make_fleet

LINES_TARGET = 1_000_000
RSS_TARGET = 200e6
CHUNK_LINES = 20_000  # lines per sendall
CHUNKS_PER_CONNECTION = 8


def build_chunks(connection: int, boards_per_connection: int) -> list[tuple[bytes, Sent]]:
    """Distinct chunks of firmware lines for one connection, each with its exact tally."""
    boards = make_fleet(boards_per_connection, first_index=connection * boards_per_connection, seed=connection + 1)
    chunks = []
    for _ in range(CHUNKS_PER_CONNECTION):
        lines = [boards[i % len(boards)].line() for i in range(CHUNK_LINES)]
        tally = Sent()
        for line in lines:
            tally.add(line)
        chunks.append((b"".join(lines), tally))
    return chunks


class Sender(threading.Thread):
    def __init__(self, port: int, chunks: list[tuple[bytes, Sent]], start_at: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.port, self.chunks, self.start_at, self.duration = port, chunks, start_at, duration
        self.sent_chunks: list[int] = []
        self.bytes = 0
        self.finished = 0.0
        self.error: str | None = None

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port))
            time.sleep(max(0.0, self.start_at - time.monotonic()))
            end = self.start_at + self.duration
            index = 0
            while time.monotonic() < end:
                data, _ = self.chunks[index % len(self.chunks)]
                sock.sendall(data)
                self.sent_chunks.append(index % len(self.chunks))
                self.bytes += len(data)
                index += 1
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(300)
            while sock.recv(65536):  # the server closes once it has read everything
                pass
            self.finished = time.monotonic()
            sock.close()
        except OSError as exc:
            self.error = str(exc)
            self.finished = time.monotonic()

    def tally(self) -> Sent:
        total = Sent()
        for index in self.sent_chunks:
            chunk = self.chunks[index][1]
            total.lines += chunk.lines
            total.samples.update(chunk.samples)
            total.sums.update(chunk.sums)
        return total


def drive(port: int, all_chunks: list[list[tuple[bytes, Sent]]], duration: float) -> tuple[float, Sent, list[str]]:
    start_at = time.monotonic() + 0.3
    senders = [Sender(port, chunks, start_at, duration) for chunks in all_chunks]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    elapsed = max(sender.finished for sender in senders) - start_at
    sent = Sent()
    for sender in senders:
        part = sender.tally()
        sent.lines += part.lines
        sent.samples.update(part.samples)
        sent.sums.update(part.sums)
    return elapsed, sent, [s.error for s in senders if s.error]


def run_bare(all_chunks: list[list[tuple[bytes, Sent]]], duration: float) -> tuple[float, int, int]:
    process = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "bare_reader.py")], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    port = int(process.stdout.readline().rsplit(":", 1)[1])
    elapsed, sent, errors = drive(port, all_chunks, duration)
    process.send_signal(signal.SIGTERM)
    counted = int(process.stdout.readline().split()[1])
    process.wait(10)
    if errors:
        print("  bare reader: sender errors", errors)
    return sent.lines / elapsed, counted, sent.lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each connection streams")
    parser.add_argument("--boards", type=int, default=8, help="distinct MACs across all connections (default 8)")
    parser.add_argument("--collect-arg", action="append", default=[], help="extra argument for manage.py collect")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-reader baseline")
    parser.add_argument(
        "--collectors",
        type=int,
        default=1,
        help="collector processes sharing the port with --reuse-port (default 1); CPU and RSS are their sums",
    )
    args = parser.parse_args()
    print(
        f"burst: {args.connections} connections streaming for {args.duration:g} s, {args.boards} boards' lines; "
        f"{machine()}"
    )
    per_connection = max(1, args.boards // args.connections)
    all_chunks = [build_chunks(c, per_connection) for c in range(args.connections)]

    db = Database()
    options = ["--stats-interval", "3600", *(["--reuse-port"] if args.collectors > 1 else [])]
    collectors: list[Collector] = []
    try:
        port = 0  # the first collector picks a free port; the others share it
        for _ in range(args.collectors):
            collectors.append(Collector(db, *options, "--port", str(port), *args.collect_arg))
            port = collectors[0].port
        samplers = [Sampler(collector.pid, interval=0.1).start() for collector in collectors]
        elapsed, sent, errors = drive(port, all_chunks, args.duration)
        for sampler in samplers:
            sampler.stop()
        stopped = time.monotonic()
        codes = [collector.stop() for collector in collectors]
        code = max(codes, key=abs)
        stop_seconds = time.monotonic() - stopped
    finally:
        for collector in collectors:
            collector.kill()
    stored = db.totals()
    db.remove()
    stored_samples = sum(n for n, _ in stored.values())
    lost = sum(sent.samples.values()) - stored_samples
    sums_ok = all(
        math.isclose(stored.get(metric, (0, 0.0))[1], total, rel_tol=1e-9) for metric, total in sent.sums.items()
    )
    rate = sent.lines / elapsed
    cpu = sum(sampler.cpu_fraction for sampler in samplers)
    rss_peak = sum(sampler.rss_peak for sampler in samplers)  # the peaks added: an upper bound
    if args.collectors > 1:
        print(
            f"  {args.collectors} collectors on one port: "
            + ", ".join(f"CPU {s.cpu_fraction * 100:.0f} %, RSS peak {mb(s.rss_peak)}" for s in samplers)
        )
    print(
        f"  collector: {sent.lines} lines in {elapsed:.2f} s, stored {stored_samples}/{sum(sent.samples.values())} "
        f"samples (value sums match: {sums_ok}), CPU {cpu * 100:.0f} % of a core, stop took "
        f"{stop_seconds:.1f} s, exit {code}{', sender errors ' + str(errors) if errors else ''}"
    )
    ratio_text = ""
    if not args.no_bare:
        bare_rate, counted, bare_sent = run_bare(all_chunks, args.duration)
        print(f"  bare reader: {bare_sent} lines sent, {counted} counted, {bare_rate:,.0f} lines/s")
        ratio_text = f"; bare newline-counting reader {bare_rate:,.0f} lines/s, collector/bare = {rate / bare_rate:.2f}"
    passed = rate >= LINES_TARGET and rss_peak < RSS_TARGET and lost == 0 and sums_ok and code == 0
    name = (
        "burst"
        if args.boards == args.connections
        else f"burst ({args.boards} boards over {args.connections} connections)"
    )
    if args.collectors > 1:
        name += f", {args.collectors} collectors"
    result_line(
        name,
        passed,
        f"{rate:,.0f} lines/s end to end (target >= {LINES_TARGET:,}), lost {lost} samples, RSS peak "
        f"{mb(rss_peak)} (target < {mb(RSS_TARGET)}){ratio_text}",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
