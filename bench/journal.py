"""The journal's cost: collector CPU with the journal on vs off in the same run, and bytes per day.

    .venv/bin/python bench/journal.py [--boards 10000] [--duration 60] [--rounds 2]
    .venv/bin/python bench/journal.py --bytes-only      # bytes per day for 10 and 1,000 boards

Each round runs the fan-in (N boards, one firmware line every 2 s each) three times on a fresh
SQLite database: journal off, journal on (fsync every 1 s, the default), journal on with
COLLECTOR_JOURNAL_SYNC_INTERVAL=0 (a record and an fsync before every read). The order rotates
between rounds, so a machine that speeds up or slows down during the run does not favour one.
CPU is the collector's utime+stime over the sending window (every thread), as in fanin.py.
Target: journal on costs at most 10 % more collector CPU than off (the ratio of the sums over
the rounds). Bytes per day: the journal bytes the collector wrote (its stats line) over the
window, scaled to 24 h; with 10 and 1,000 boards (SD-card wear).
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time

from common import Collector, Database, Sampler, machine, raise_file_limit, result_line
from loadgen import Fleet

TARGET = 1.10
BYTES_RE = re.compile(r"journal: (\d+) bytes written")
MODES = {
    "off": {"COLLECTOR_JOURNAL": "off"},
    "on": {"COLLECTOR_JOURNAL": "on"},
    "sync-0": {"COLLECTOR_JOURNAL": "on", "COLLECTOR_JOURNAL_SYNC_INTERVAL": "0"},
}


def run(boards: int, duration: float, env: dict[str, str]) -> dict:
    """One fan-in: CPU seconds over the window, journal bytes written, samples lost."""
    journal_dir = tempfile.mkdtemp(prefix="greenhouse-journal-")
    db = Database()
    env = {**env, "COLLECTOR_JOURNAL_DIR": journal_dir}
    collector = Collector(db, "--stats-interval", str(max(1.0, duration / 2)), env=env)
    fleet = Fleet(boards, "127.0.0.1", collector.port)
    try:
        connected = fleet.connect_all(spread=min(5.0, boards / 2000))
        time.sleep(1.0)
        sampler = Sampler(collector.pid).start()
        fleet.run(duration, interval=2.0)
        sampler.stop()
        time.sleep(0.5)
        code = collector.stop()
    finally:
        fleet.close()
        collector.kill()
    stored = db.totals()
    db.remove()
    shutil.rmtree(journal_dir, ignore_errors=True)
    written = [int(match.group(1)) for line in collector.stats_lines() if (match := BYTES_RE.search(line))]
    lost = sum(fleet.sent.samples.values()) - sum(n for n, _ in stored.values())
    return {
        "cpu": sampler.cpu_end - sampler.cpu_start,
        "fraction": sampler.cpu_fraction,
        "bytes": max(written, default=0),
        "lost": lost,
        "failed": connected.failed,
        "code": code,
        "window": sampler.wall_end - sampler.wall_start,
    }


def bytes_per_day(duration: float) -> None:
    for boards in (10, 100, 1000):
        result = run(boards, duration, MODES["on"])
        per_day = result["bytes"] / result["window"] * 86400
        print(
            f"journal bytes: {boards} boards: {result['bytes']} bytes in {result['window']:.0f} s "
            f"-> {per_day / 1e6:.1f} MB/day ({per_day / boards / 1e3:.0f} kB per board per day), "
            f"{86400 / 1.0:.0f} fsyncs/day at the default 1 s, lost {result['lost']}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bytes-only", action="store_true")
    args = parser.parse_args()
    raise_file_limit(args.boards + 256)
    print(
        f"journal cost: {args.boards} boards x 1 line / 2 s for {args.duration:g} s, {args.rounds} rounds; {machine()}"
    )
    if args.bytes_only:
        bytes_per_day(args.duration)
        return 0
    totals = {mode: 0.0 for mode in MODES}
    ok = True
    names = list(MODES)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for mode in order:
            result = run(args.boards, args.duration, MODES[mode])
            totals[mode] += result["cpu"]
            ok = ok and result["lost"] == 0 and result["failed"] == 0 and result["code"] == 0
            print(
                f"  round {round_ + 1} {mode:>6}: CPU {result['fraction'] * 100:5.1f} % of a core, journal "
                f"{result['bytes']} bytes ({result['bytes'] / result['window'] / 1e3:.0f} kB/s), "
                f"lost {result['lost']}, exit {result['code']}",
                flush=True,
            )
    ratio = totals["on"] / totals["off"]
    ratio_zero = totals["sync-0"] / totals["off"]
    result_line(
        "journal cost",
        ok and ratio <= TARGET,
        f"CPU journal on / off = {ratio:.3f} (target <= {TARGET:.2f}); sync interval 0 / off = {ratio_zero:.3f}; "
        f"0 lost in every run: {ok}",
    )
    bytes_per_day(args.duration)
    return 0 if ok and ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
