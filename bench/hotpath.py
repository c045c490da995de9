"""The ingest hot path in one process, without sockets: frame -> parse -> aggregate, timed and profiled.

    .venv/bin/python bench/hotpath.py            # lines/s of Collector.handle_lines on firmware lines
    .venv/bin/python bench/hotpath.py --profile  # the same under cProfile, top functions

Not a target figure (the burst benchmark is, end to end); a microscope for the parts of it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensors.ingest.collector import Collector, CollectorConfig
from sensors.ingest.framing import LineFramer
from sensors.ingest.protocol import parse_line
from sensors.ingest.simulator import make_fleet


class NullWriter:
    pending_buckets = 0
    rows_written = 0
    dropped_samples = 0

    def submit(self, batch) -> None:
        pass


def build_stream(boards: int, lines: int) -> bytes:
    fleet = make_fleet(boards)
    return b"".join(fleet[i % boards].line() for i in range(lines))


def run(stream: bytes, chunk: int) -> tuple[float, int]:
    collector = Collector(CollectorConfig(), NullWriter())  # type: ignore[arg-type]
    framer = LineFramer()
    handle = collector.handle_block
    started = time.perf_counter()
    for offset in range(0, len(stream), chunk):
        block, _ = framer.feed_block(stream[offset : offset + chunk])
        handle("127.0.0.1", block, 1_764_000_000.0)
    return time.perf_counter() - started, collector.lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--boards", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=262_144, help="bytes per read")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    stream = build_stream(args.boards, args.lines)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        run(stream, args.chunk)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        return
    lines = stream.split(b"\n")[:-1]
    started = time.perf_counter()
    for line in lines:
        parse_line(line)
    parse_rate = len(lines) / (time.perf_counter() - started)
    best = min(run(stream, args.chunk)[0] for _ in range(3))
    print(
        f"hot path: {args.lines / best:,.0f} lines/s frame+parse+aggregate ({args.chunk} byte reads); "
        f"parse_line alone {parse_rate:,.0f} lines/s"
    )


if __name__ == "__main__":
    main()
