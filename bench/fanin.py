"""Fan-in: 10,000 boards connected at once, one firmware line every 2 s each, for 2 minutes.

Target: 0 lines lost, the collector under 10 % of one core on average and RSS under 150 MB.

    .venv/bin/python bench/fanin.py [--boards 10000] [--duration 120] [--collect-arg=--flush-interval=5]

CPU is the collector's utime+stime over the sending window divided by its length (every
thread: listener, writer, known-sensors); RSS is sampled every 0.25 s over the same window.
Lost = samples sent - samples stored (sum of Reading.samples per metric), read after SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import time

from common import Collector, Database, Sampler, machine, mb, raise_file_limit, result_line
from loadgen import Fleet

CPU_TARGET = 0.10
RSS_TARGET = 150e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of sending (default 120)")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--collect-arg", action="append", default=[], help="extra argument for manage.py collect")
    parser.add_argument("--profile", default="", help="write cProfile stats of the collector's main thread here")
    args = parser.parse_args()
    raise_file_limit(args.boards + 256)
    print(f"fan-in: {args.boards} boards x 1 line / {args.interval:g} s for {args.duration:g} s; {machine()}")

    db = Database()
    collector = Collector(db, "--stats-interval", "30", *args.collect_arg, profile=args.profile)
    fleet = Fleet(args.boards, "127.0.0.1", collector.port)
    try:
        # Connect over 5 s (the reconnect storm is its own figure), then measure the steady state.
        connected = fleet.connect_all(spread=5.0)
        if connected.failed:
            print(f"  {connected.failed} boards could not connect")
        time.sleep(1.0)
        sampler = Sampler(collector.pid).start()
        fleet.run(args.duration, interval=args.interval)
        sampler.stop()
        time.sleep(0.5)  # the last lines reach the collector
        stopped = time.monotonic()
        code = collector.stop()
        stop_seconds = time.monotonic() - stopped
    finally:
        fleet.close()
        collector.kill()
    stored = db.totals()
    db.remove()

    sent = fleet.sent
    lost = sum(sent.samples.values()) - sum(n for n, _ in stored.values())
    sums_ok = all(
        math.isclose(stored.get(metric, (0, 0.0))[1], total, rel_tol=1e-9) for metric, total in sent.sums.items()
    )
    print(f"  CPU by thread: {sampler.breakdown()}")
    for line in collector.stats_lines()[-3:]:
        print("  collector", line[line.index("stats:") :])
    print(
        f"  sent {sent.lines} lines ({sum(sent.samples.values())} samples), stored "
        f"{sum(n for n, _ in stored.values())} samples; per metric {dict(sent.samples)} vs "
        f"{ {m: n for m, (n, _) in stored.items()} }; value sums match: {sums_ok}; "
        f"send errors {fleet.send_errors}, blocked sends {fleet.blocked_sends}; exit {code} after {stop_seconds:.1f} s"
    )
    passed = (
        lost == 0
        and sums_ok
        and connected.failed == 0
        and code == 0
        and sampler.cpu_fraction < CPU_TARGET
        and sampler.rss_peak < RSS_TARGET
    )
    result_line(
        "fan-in",
        passed,
        f"{args.boards} boards, {args.duration:g} s: lost {lost} samples, CPU {sampler.cpu_fraction * 100:.1f} % "
        f"of a core (target < {CPU_TARGET * 100:.0f} %), RSS peak {mb(sampler.rss_peak)} mean "
        f"{mb(sampler.rss_mean)} (target < {mb(RSS_TARGET)})",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
