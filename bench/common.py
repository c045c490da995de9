"""Shared plumbing for the benchmarks: a throwaway database, the real collector, /proc sampling.

Every benchmark starts `manage.py collect` as a subprocess (as supervisor does), drives it over
loopback and measures that process only: CPU from utime+stime in /proc/PID/stat (all threads),
RSS sampled from /proc/PID/status. No third-party dependency.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.processes import CollectorProcess  # noqa: E402

PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def raise_file_limit(wanted: int) -> int:
    from greenhouse_site.startup import raise_file_limit as lift

    return lift(wanted)


def result_line(figure: str, passed: bool, text: str) -> str:
    line = f"{figure}: {'PASS' if passed else 'FAIL'}  {text}"
    print(line, flush=True)
    return line


# --- a throwaway SQLite database -------------------------------------------------------
class Database:
    """A fresh, migrated SQLite file in a temporary directory (or a given DATABASE_URL)."""

    def __init__(self, url: str | None = None) -> None:
        self.tmp: str | None = None
        if url is None:
            self.tmp = tempfile.mkdtemp(prefix="greenhouse-bench-")
            url = f"sqlite:///{self.tmp}/bench.sqlite3"
        self.url = url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "greenhouse_site.settings",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
            # Every benchmark's boards arrive from 127.0.0.1 and register at once: lift the limits
            # that fence a real LAN (docs/security.md) so they measure the pipeline, not the fence.
            "COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            "COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE": "100000",
            "COLLECTOR_MAX_SENSORS": "100000",
        }
        subprocess.run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=self.env, check=True)

    def totals(self) -> dict[str, tuple[int, float]]:
        """metric -> (sum of samples, sum of value_sum) over every stored minute."""
        script = (
            "import json, django; django.setup();"
            "from django.db.models import Sum; from sensors.models import Reading;"
            "rows = Reading.objects.values('metric').annotate(n=Sum('samples'), s=Sum('value_sum'));"
            "print(json.dumps({r['metric']: [r['n'], r['s']] for r in rows}))"
        )
        out = subprocess.run(
            [PYTHON, "-c", script], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout
        import json

        return {metric: (int(n), float(s)) for metric, (n, s) in json.loads(out.strip().splitlines()[-1]).items()}

    def sensor_count(self) -> int:
        script = "import django; django.setup(); from sensors.models import Sensor; print(Sensor.objects.count())"
        out = subprocess.run(
            [PYTHON, "-c", script], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout
        return int(out.strip().splitlines()[-1])

    def remove(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --- the collector under test ----------------------------------------------------------
class Collector(CollectorProcess):
    """`manage.py collect --host 127.0.0.1 --port 0 ...`, its log kept, its port read from the log."""

    def __init__(self, db: Database, *args: str, env: dict[str, str] | None = None, profile: str = "") -> None:
        """`profile`: a file for cProfile's stats of the main (listener) thread, written at exit."""
        python = [PYTHON, "-m", "cProfile", "-o", profile] if profile else [PYTHON]
        try:
            super().__init__(*args, env={**db.env, **(env or {})}, python=python, ready_seconds=30)
        except AssertionError as exc:
            raise SystemExit(str(exc)) from None

    def stats_lines(self) -> list[str]:
        return [line.strip() for line in self.lines if "stats:" in line]

    def stop(self, timeout: float = 60.0) -> int:
        return super().stop(timeout)


# --- /proc measurements ----------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) seconds of the main thread ("main", which serves the sockets) and of all others."""
    split = {"main": [0.0, 0.0], "other threads": [0.0, 0.0]}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        part = split["main" if int(tid) == pid else "other threads"]
        part[0] += int(fields[11]) / CLOCK_TICKS
        part[1] += int(fields[12]) / CLOCK_TICKS
    return {name: (user, system) for name, (user, system) in split.items()}


def main_thread_wakeups(pid: int) -> int:
    """Voluntary context switches of the main thread: about one per blocking poll (wakeups)."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_BYTES


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sampler:
    """Samples a process's RSS every `interval` s in a thread; CPU is read at start/stop."""

    pid: int
    interval: float = 0.25
    rss: list[int] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self.wall_start = time.monotonic()
        self.cpu_start = cpu_seconds(self.pid)
        self.threads_start = thread_cpu(self.pid)
        self.wakeups_start = main_thread_wakeups(self.pid)
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        self.cpu_end = cpu_seconds(self.pid)
        self.threads_end = thread_cpu(self.pid)
        self.wakeups_end = main_thread_wakeups(self.pid)
        self.wall_end = time.monotonic()
        self._stop.set()
        self._thread.join()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss.append(rss_bytes(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    @property
    def cpu_fraction(self) -> float:
        """Average share of one core over the sampled window."""
        return (self.cpu_end - self.cpu_start) / max(self.wall_end - self.wall_start, 1e-9)

    def breakdown(self) -> str:
        """Share of one core per thread group, user + system (threads that ended are not counted)."""
        wall = max(self.wall_end - self.wall_start, 1e-9)
        parts = []
        for name, (user, system) in self.threads_end.items():
            user0, system0 = self.threads_start.get(name, (0.0, 0.0))
            parts.append(
                f"{name} {(user - user0) / wall * 100:.1f} % user + {(system - system0) / wall * 100:.1f} % sys"
            )
        wakeups = (self.wakeups_end - self.wakeups_start) / wall
        return "; ".join(parts) + f"; main thread {wakeups:,.0f} wakeups/s"

    @property
    def rss_peak(self) -> int:
        return max(self.rss, default=0)

    @property
    def rss_mean(self) -> float:
        return sum(self.rss) / len(self.rss) if self.rss else 0.0


def mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Linux {os.uname().release}, Python {sys.version.split()[0]}"
