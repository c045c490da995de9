"""Reconnect storm: all 10,000 boards connect within the same second (a collector restart).

Target: all connected within 2 s, none refused.

    .venv/bin/python bench/storm.py [--boards 10000] [--spread 0]

The generator starts every connect at once (--spread 0, the worst case; --spread 1 starts them
evenly over one second). Two clocks are reported: when the last client handshake completed (a
SYN dropped on a full accept queue is retried by the kernel after 1 s, then 3 s), and when the
collector itself had accepted every connection (its open sockets in /proc/PID/fd). Each board
sends one line as soon as it is connected; after SIGTERM every one of them must be stored.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import Collector, Database, machine, open_fds, raise_file_limit, result_line
from loadgen import Fleet

TARGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=0.0, help="start the connects over this many seconds")
    parser.add_argument("--collect-arg", action="append", default=[], help="extra argument for manage.py collect")
    args = parser.parse_args()
    raise_file_limit(args.boards + 256)
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    print(f"storm: {args.boards} boards connecting at once; somaxconn {somaxconn}; {machine()}")

    db = Database()
    collector = Collector(db, "--stats-interval", "3600", *args.collect_arg)
    fleet = Fleet(args.boards, "127.0.0.1", collector.port)
    baseline_fds = open_fds(collector.pid)
    accepted_at: list[float] = []
    watching = threading.Event()

    def watch() -> None:  # when has the collector accepted them all?
        while not watching.is_set():
            if open_fds(collector.pid) - baseline_fds >= args.boards:
                accepted_at.append(time.monotonic())
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        watcher.start()
        result = fleet.connect_all(spread=args.spread, timeout=20.0, first_line=True)
        watcher.join(10)
        watching.set()
        fleet.flush_pending()
        time.sleep(1.0)
        code = collector.stop()
    finally:
        watching.set()
        fleet.close()
        collector.kill()
    stored = db.totals()
    db.remove()

    client_seconds = result.last_connected - result.first_started if result.connected else float("inf")
    accept_seconds = accepted_at[0] - result.first_started if accepted_at else float("inf")
    times = sorted(t for t in result.connect_times if t > 0)
    stored_lines = stored.get("soil_moisture", (0, 0.0))[0]
    late = sum(1 for t in times if t > 1.0)
    print(
        f"  connected {result.connected}, refused {result.refused}, timed out {result.timed_out}, other errors "
        f"{result.other_errors}; handshake median {statistics.median(times) if times else 0:.3f} s, "
        f"p99 {times[int(len(times) * 0.99) - 1] if times else 0:.3f} s, over 1 s: {late}; "
        f"first lines sent {fleet.sent.lines}, stored {stored_lines}; exit {code}"
    )
    slowest = max(client_seconds, accept_seconds)
    passed = (
        result.connected == args.boards
        and result.failed == 0
        and slowest < TARGET_SECONDS
        and stored_lines == fleet.sent.lines
        and code == 0
    )
    result_line(
        "storm",
        passed,
        f"{result.connected}/{args.boards} connected, {result.failed} refused/failed; last handshake after "
        f"{client_seconds:.2f} s, all accepted by the collector after {accept_seconds:.2f} s "
        f"(target < {TARGET_SECONDS:g} s); {stored_lines}/{fleet.sent.lines} first lines stored",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
